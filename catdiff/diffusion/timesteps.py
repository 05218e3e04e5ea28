"""Which training timesteps t the loss sees: the distribution p(t) of ``sample_timesteps``.

``"uniform"`` is the seed's (and Ho et al. 2020's) t ~ U{0, ..., T-1}. ``"lognormal"`` is the
noise-level distribution of Karras et al. 2022 ("Elucidating the Design Space of
Diffusion-Based Generative Models", EDM, Sec. 5): log sigma ~ N(p_mean, p_std^2), where sigma is
the noise-to-signal ratio of x_t,

    sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t)     (x_t / sqrt(alpha_bar_t) = x0 + sigma_t eps)

so the choice does not depend on the schedule. The paper's p_mean = -1.2, p_std = 1.2 are for
data of std sigma_data = 0.5; catdiff's faces in [-1, 1] have std 0.49. It spends the training
on the middle and low noise levels that shape details, and few steps on the near-pure-noise
end that a uniform t over a cosine schedule visits often.

``"logit_normal"`` is rectified flow's (Esser et al. 2024, SD3: logit(r) ~ N(m, s^2), m = 0,
s = 1 best of their samplings) for the flow time r = s_t / (a_t + s_t) of
:mod:`catdiff.diffusion.objectives`. Since logit(r) = log(s_t / a_t) = log sigma_t, it is the
same distribution as ``"lognormal"``; the name says which paper's parameters to expect.

On the discrete grid, t gets the normal's mass over its interval of log sigma (boundaries at the
midpoints between neighbouring log sigma_t; the first and last intervals extend to -inf and
+inf), so the probabilities sum to one exactly and no t is ever drawn that the network cannot
be asked about at sampling time.
"""

import torch

from catdiff.errors import UserError, check_choice

T_SAMPLINGS = ("uniform", "lognormal", "logit_normal")


def check_t_sampling(t_sampling: str, p_std: float) -> None:
    """Raise UserError unless ``t_sampling`` is in T_SAMPLINGS and ``p_std`` > 0."""
    check_choice("diffusion.t_sampling", t_sampling, T_SAMPLINGS)
    if not p_std > 0:
        raise UserError(f"diffusion.t_p_std={p_std!r} must be > 0 (EDM: 1.2)")


def t_probabilities(
    alpha_bar: torch.Tensor, t_sampling: str = "uniform", p_mean: float = -1.2, p_std: float = 1.2
) -> torch.Tensor:
    """p(t) for t = 0..T-1 as a float64 (T,) tensor that sums to 1.

    Args:
        alpha_bar: (T,) cumulative products alpha_bar_t, decreasing in t.
        t_sampling: ``"uniform"``, ``"lognormal"`` or ``"logit_normal"``
            (config key ``diffusion.t_sampling``).
        p_mean, p_std: mean and std of log sigma = logit(r) for the other two
            (``diffusion.t_p_mean``, ``diffusion.t_p_std``).
    """
    check_t_sampling(t_sampling, p_std)
    alpha_bar = torch.as_tensor(alpha_bar, dtype=torch.float64)
    T = alpha_bar.shape[0]
    if t_sampling == "uniform":
        return torch.full((T,), 1.0 / T, dtype=torch.float64)
    log_sigma = 0.5 * (torch.log1p(-alpha_bar) - torch.log(alpha_bar))
    inf = torch.tensor([float("inf")], dtype=torch.float64)
    edges = torch.cat([-inf, (log_sigma[1:] + log_sigma[:-1]) / 2, inf])
    cdf = torch.special.ndtr((edges - p_mean) / p_std)
    return (cdf[1:] - cdf[:-1]).clamp(min=0.0)
