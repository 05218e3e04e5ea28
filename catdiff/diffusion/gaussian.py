"""The Gaussian diffusion process: forward noising, its posterior, and one reverse DDPM step.

Symbols follow the seed; timesteps are 0-based as in diffusers' DDPMScheduler (t = 0..T-1,
t = 0 is the first noising step), and x0 is the clean image:

    alpha_t      = 1 - beta_t
    alpha_bar_t  = prod_{i<=t} alpha_i                  (alpha_bar_{-1} = 1)
    q(x_t | x0)  = N(sqrt(alpha_bar_t) x0, (1 - alpha_bar_t) I)
    q(x_{t-1} | x_t, x0) = N(mu_tilde_t, beta_tilde_t I)          (x_{-1} is x0 itself)
    beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) * beta_t
    mu_tilde_t   = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) * x0
                 + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) * x_t
                 = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) * eps)   (seed, x0 from eps)

Image tensors are (B, C, H, W) (any (B, ...) works); timesteps t are long tensors (B,).
"""

import torch

from catdiff.diffusion.losses import check_loss, elementwise_loss
from catdiff.diffusion.objectives import OBJECTIVES, make_objective
from catdiff.diffusion.timesteps import check_t_sampling, t_probabilities
from catdiff.errors import UserError, check_choice

__all__ = ["OBJECTIVES", "GaussianDiffusion", "check_objective", "check_sigma", "min_snr_weight"]

SIGMAS = ("beta_tilde", "beta")
LOSS_WEIGHTS = ("none", "min_snr")

# Ho et al. 2020: images are scaled to [-1, 1], so a predicted x0 outside it is clipped back.
_X0_RANGE = 1.0


def check_objective(objective: str) -> None:
    """Raise UserError unless ``objective`` is one of OBJECTIVES or an objective's import path."""
    make_objective(objective)


def check_loss_weight(loss_weight: str, min_snr_gamma: float) -> None:
    """Raise UserError unless ``loss_weight`` is in LOSS_WEIGHTS and ``min_snr_gamma`` > 0."""
    check_choice("diffusion.loss_weight", loss_weight, LOSS_WEIGHTS)
    if not min_snr_gamma > 0:
        raise UserError(f"diffusion.min_snr_gamma={min_snr_gamma!r} must be > 0 (e.g. 5.0)")


def min_snr_weight(snr: torch.Tensor, objective: str, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma loss weights (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR
    Weighting Strategy"), expressed for the objective's own target.

    In x0 terms the weight is min(SNR_t, gamma): high-SNR (low-noise) steps, whose gradients
    conflict with the rest, stop dominating. An error of the objective's target is an x0 error
    scaled by sqrt(``x0_error_scale(SNR)``) (:mod:`catdiff.diffusion.objectives`), so the same
    weighting reads eps: min(SNR, gamma) / SNR;  x0: min(SNR, gamma);  v: min(SNR, gamma) /
    (SNR + 1);  flow: min(SNR, gamma) / (sqrt(SNR) + 1)^2.
    """
    return snr.clamp(max=gamma) / make_objective(objective).x0_error_scale(snr)


def check_sigma(sigma: str) -> None:
    """Raise UserError unless ``sigma`` (the reverse-step variance) is one of SIGMAS."""
    check_choice("sampler.sigma", sigma, SIGMAS)


def _per_sample(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B,) values reshaped to (B, 1, ..., 1) so they broadcast against x (B, ...), in x's dtype."""
    return values.to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))


def _gather(coef: torch.Tensor, t: torch.Tensor | int, x: torch.Tensor) -> torch.Tensor:
    """coef[t] for each sample, shaped (B, 1, ..., 1) to broadcast against x (B, ...)."""
    return _per_sample(coef[t], x)


class GaussianDiffusion(torch.nn.Module):
    """The seed's diffusion process for a given schedule, objective and loss.

    Args:
        betas: (T,) variance schedule beta_t, values in (0, 1), e.g. ``make_betas("linear", 1000)``.
        objective: what the network predicts (config key ``diffusion.objective``):
            ``"eps"`` the noise (the seed, Ho et al. 2020); ``"x0"`` the clean image;
            ``"v"`` v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x0 (Salimans & Ho 2022);
            ``"flow"`` the rectified-flow velocity eps - x0; or an objective's import path
            (:mod:`catdiff.diffusion.objectives`).
        loss: element-wise loss against the objective's target, one of ``LOSSES``
            (config key ``diffusion.loss``; the seed uses ``"l1"``).
        huber_delta: threshold of the Huber loss (config key ``diffusion.huber_delta``).
        loss_weight: per-timestep weight of the loss: ``"none"`` (uniform, the seed) or
            ``"min_snr"`` (:func:`min_snr_weight`; config key ``diffusion.loss_weight``).
        min_snr_gamma: the gamma of min-SNR weighting (``diffusion.min_snr_gamma``; paper: 5).
        t_sampling: the training distribution of t (``diffusion.t_sampling``): ``"uniform"``
            (the seed) or ``"lognormal"`` in sigma_t (Karras et al. 2022; see
            :mod:`catdiff.diffusion.timesteps`), with ``t_p_mean``/``t_p_std`` the mean and std
            of log sigma (``diffusion.t_p_mean``, ``diffusion.t_p_std``; paper: -1.2, 1.2).

    All per-timestep constants are computed in float64 and kept as float32 buffers of shape (T,)
    that move with ``.to(device)``; they are not persistent because they follow from the config,
    so checkpoints hold only the network.
    """

    betas: torch.Tensor
    alphas: torch.Tensor
    alpha_bar: torch.Tensor
    alpha_bar_prev: torch.Tensor
    sqrt_alpha_bar: torch.Tensor
    sqrt_one_minus_alpha_bar: torch.Tensor
    beta_tilde: torch.Tensor
    posterior_log_variance_clipped: torch.Tensor
    posterior_mean_coef1: torch.Tensor
    posterior_mean_coef2: torch.Tensor

    def __init__(
        self,
        betas: torch.Tensor,
        objective: str = "eps",
        loss: str = "l1",
        huber_delta: float = 1.0,
        loss_weight: str = "none",
        min_snr_gamma: float = 5.0,
        t_sampling: str = "uniform",
        t_p_mean: float = -1.2,
        t_p_std: float = 1.2,
    ) -> None:
        super().__init__()
        self.objective = objective
        check_loss(loss, huber_delta)
        check_loss_weight(loss_weight, min_snr_gamma)
        check_t_sampling(t_sampling, t_p_std)
        self.t_sampling = t_sampling
        self.loss = loss
        self.huber_delta = huber_delta
        self.loss_weight = loss_weight
        self.min_snr_gamma = min_snr_gamma

        betas = torch.as_tensor(betas).detach().to("cpu", torch.float64)
        if betas.ndim != 1 or betas.numel() == 0 or not ((betas > 0) & (betas < 1)).all():
            raise UserError(
                "diffusion betas must be a non-empty 1-D tensor in (0, 1); "
                "check diffusion.schedule, diffusion.beta_start and diffusion.beta_end"
            )
        constants = _constants(betas)
        for name, value in constants.items():
            self.register_buffer(name, value.float(), persistent=False)
        snr = constants["alpha_bar"] / (1 - constants["alpha_bar"])
        weights = (
            min_snr_weight(snr, objective, min_snr_gamma)
            if loss_weight == "min_snr"
            else torch.ones_like(snr)
        )
        self.register_buffer("loss_weights", weights.float(), persistent=False)
        probs = t_probabilities(constants["alpha_bar"], t_sampling, t_p_mean, t_p_std)
        self.register_buffer("t_probs", probs.float(), persistent=False)

    @property
    def objective(self) -> str:
        """The objective's name (``diffusion.objective``); setting it builds the objective."""
        return self._objective_name

    @objective.setter
    def objective(self, name: str) -> None:
        self._objective = make_objective(name)
        self._objective_name = name

    @property
    def T(self) -> int:
        """Number of diffusion steps."""
        return self.betas.shape[0]

    def extra_repr(self) -> str:
        weight = (
            "" if self.loss_weight == "none" else f", loss_weight=min_snr({self.min_snr_gamma:g})"
        )
        t_sampling = "" if self.t_sampling == "uniform" else f", t_sampling={self.t_sampling!r}"
        return f"T={self.T}, objective={self.objective!r}, loss={self.loss!r}{weight}{t_sampling}"

    def _coefs(self, t: torch.Tensor | int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t)), each shaped to broadcast against x."""
        return _gather(self.sqrt_alpha_bar, t, x), _gather(self.sqrt_one_minus_alpha_bar, t, x)

    # ---- forward process q --------------------------------------------------------------

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise: noise t+1 steps in one go."""
        a, s = self._coefs(t, x0)
        return a * x0 + s * noise

    def q_posterior(
        self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean mu_tilde_t (B, C, H, W) and variance beta_tilde_t (B, 1, 1, 1) of q(x_{t-1} | x_t, x0)."""
        mean = (
            _gather(self.posterior_mean_coef1, t, x_t) * x0
            + _gather(self.posterior_mean_coef2, t, x_t) * x_t
        )
        return mean, _gather(self.beta_tilde, t, x_t)

    # ---- the network output read as x0 and eps (all (B, C, H, W), t (B,)) ---------------

    def predict_eps_from_x0(
        self, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor
    ) -> torch.Tensor:
        """eps = (x_t - sqrt(alpha_bar_t) x0) / sqrt(1 - alpha_bar_t)."""
        a, s = self._coefs(t, x_t)
        return (x_t - a * x0) / s

    def model_to_x0_eps(
        self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Read the network output (B, C, H, W) as (x0_pred, eps_pred) according to the objective."""
        return self._objective.to_x0_eps(model_output, x_t, *self._coefs(t, x_t))

    # ---- training --------------------------------------------------------------------------

    def target(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """What the network should output for x_t = q_sample(x0, t, noise): eps, x0, v, flow."""
        return self._objective.target(x0, noise, *self._coefs(t, x0))

    def loss_per_sample(
        self, model_output: torch.Tensor, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor
    ) -> torch.Tensor:
        """Element-wise loss of the output against ``target``, averaged over C, H, W and times
        the timestep's ``loss_weights`` (1 unless ``loss_weight="min_snr"``): shape (B,).

        The seed's loss ||z - NN(x_t, t)||_1 is objective="eps", loss="l1".
        """
        per_element = elementwise_loss(
            self.loss, model_output, self.target(x0, t, noise), self.huber_delta
        )
        per_sample = per_element.mean(dim=tuple(range(1, per_element.ndim)))
        if self.loss_weight == "none":
            return per_sample
        return per_sample * self.loss_weights[t].to(per_sample.dtype)

    def sample_timesteps(
        self,
        batch_size: int,
        device: torch.device | str,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Training timesteps drawn from ``t_probs``: long tensor (batch_size,).

        Uniform sampling keeps ``randint`` (so its draws are those of every earlier catdiff run).
        """
        if self.t_sampling != "uniform":
            return torch.multinomial(
                self.t_probs, batch_size, replacement=True, generator=generator
            ).to(device)
        return torch.randint(
            0, self.T, (batch_size,), device=device, generator=generator, dtype=torch.long
        )

    # ---- reverse process p -------------------------------------------------------------------

    def p_mean_variance(
        self,
        model_output: torch.Tensor,
        x_t: torch.Tensor,
        t: torch.Tensor,
        clip_x0: bool = True,
        sigma: str = "beta_tilde",
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean and variance of p(x_{t-1} | x_t): q's posterior with x0 replaced by the prediction.

        With eps prediction and clip_x0=False the mean is the seed's
        mu_tilde_t = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_theta).

        Args:
            clip_x0: clip the predicted x0 to [-1, 1] before forming the mean (Ho et al. 2020).
            sigma: the variance (config key ``sampler.sigma``): ``"beta_tilde"`` the posterior
                variance beta_tilde_t (the seed), or ``"beta"`` beta_t (Ho et al. 2020 found both
                give similar samples; beta_t is the upper bound).

        Returns:
            mean (B, C, H, W), variance (B, 1, 1, 1), x0_pred (B, C, H, W).
        """
        check_sigma(sigma)
        x0_pred, _ = self.model_to_x0_eps(model_output, x_t, t)
        if clip_x0:
            x0_pred = x0_pred.clamp(-_X0_RANGE, _X0_RANGE)
        mean, variance = self.q_posterior(x0_pred, x_t, t)
        if sigma == "beta":
            variance = _gather(self.betas, t, x_t)
        return mean, variance, x0_pred

    def ddpm_step(
        self,
        model_output: torch.Tensor,
        x_t: torch.Tensor,
        t: torch.Tensor | int,
        noise: torch.Tensor | None,
        clip_x0: bool = True,
        sigma: str = "beta_tilde",
    ) -> torch.Tensor:
        """One step of the seed's sampling loop: x_{t-1} = mu_tilde_t + sqrt(beta_tilde_t) z.

        (The seed writes ``+ beta_tilde_t z``; the standard deviation is sqrt(beta_tilde_t).)

        ``t`` is an int or a (B,) long tensor; ``noise`` z ~ N(0, I) (B, C, H, W) is applied only
        where t > 0 (the last step, t = 0, returns the mean, the generated image), None adds none;
        ``clip_x0`` and ``sigma`` as in ``p_mean_variance``.
        """
        if isinstance(t, int):
            t = torch.full((x_t.shape[0],), t, device=x_t.device, dtype=torch.long)
        mean, variance, _ = self.p_mean_variance(model_output, x_t, t, clip_x0, sigma)
        if noise is None:
            return mean
        # A mask instead of `if t > 0` keeps per-sample timesteps and avoids a host sync.
        noisy = _per_sample(t > 0, x_t)
        return mean + noisy * variance.sqrt() * noise


def _constants(betas: torch.Tensor) -> dict[str, torch.Tensor]:
    """All per-timestep constants of the process, float64 (T,), from betas beta_t."""
    alphas = 1 - betas
    alpha_bar = torch.cumprod(alphas, dim=0)
    alpha_bar_prev = torch.cat([alpha_bar.new_ones(1), alpha_bar[:-1]])
    beta_tilde = betas * (1 - alpha_bar_prev) / (1 - alpha_bar)
    # beta_tilde_0 = 0 makes its log -inf; Ho et al. 2020's code uses beta_tilde_1 in its place
    # (with T = 1 there is no beta_tilde_1, so beta_0 stands in).
    floor = beta_tilde[1:2] if len(betas) > 1 else betas[:1]
    return {
        "betas": betas,
        "alphas": alphas,
        "alpha_bar": alpha_bar,
        "alpha_bar_prev": alpha_bar_prev,
        "sqrt_alpha_bar": alpha_bar.sqrt(),
        "sqrt_one_minus_alpha_bar": (1 - alpha_bar).sqrt(),
        "beta_tilde": beta_tilde,
        "posterior_log_variance_clipped": torch.cat([floor, beta_tilde[1:]]).log(),
        "posterior_mean_coef1": alpha_bar_prev.sqrt() * betas / (1 - alpha_bar),
        "posterior_mean_coef2": alphas.sqrt() * (1 - alpha_bar_prev) / (1 - alpha_bar),
    }
