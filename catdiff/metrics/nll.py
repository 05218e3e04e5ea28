"""Negative log-likelihood in bits/dim from the DDPM variational bound (Ho et al. 2020, eq. 5).

For x0 discrete in 256 levels scaled to [-1, 1] (uint8 x -> x / 127.5 - 1), with 0-based
timesteps t = 0..T-1 as in ``GaussianDiffusion``, the bound on -log p(x0) in nats is

    L = L_prior + sum_{t=1}^{T-1} L_t + L_0
    L_prior = KL(q(x_{T-1} | x0) || N(0, I))
    L_t     = E_q KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t))               (t >= 1)
    L_0     = E_q -log p(x0 | x_0)   (t = 0 is the decoder: x_0 is the first noisy step)

p(x_{t-1} | x_t) = N(mu_theta, sigma_t^2 I): mu_theta is q's posterior mean with the
predicted x0, NOT clipped to [-1, 1] (the bound of the network's own Gaussian mean; Ho et al.'s
code clips by default). sigma_t^2 is fixed (``sigma``):

    "beta"        beta_t, with beta_0 replaced by beta_tilde_1 (Ho et al.'s "fixedlarge")
    "beta_tilde"  beta_tilde_t, with beta_tilde_0 = 0 replaced by beta_tilde_1 ("fixedsmall")

so both give the decoder the same variance beta_tilde_1. The decoder is the discretised
Gaussian of Ho et al. Sec. 3.3: bins of width 2/255 around each level, the outermost bins
extended to -inf and +inf. Each term is summed over the D = C*H*W dimensions (nats per image);
bits/dim = nats / (D ln 2).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from catdiff.diffusion.gaussian import GaussianDiffusion
from catdiff.errors import UserError, check_choice

Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
MODES = ("sampled", "full")
NLL_SIGMAS = ("beta", "beta_tilde")
_HALF_BIN = 1.0 / 255.0  # half the spacing of 256 levels on [-1, 1]
_EDGE = 0.999  # |x0| beyond this is the outermost level (-1 or +1)


@dataclass
class NLLResult:
    """The bound in bits/dim over a set of images: ``se`` is std / sqrt(n) over images (NaN
    for one), ``timesteps_per_image`` T ("full") or k ("sampled", plus the decoder), ``terms``
    the mean bits/dim of "prior", "decoder" and "sum_L_t", which add to ``bpd``."""

    bpd: float
    se: float
    n_images: int
    mode: str
    timesteps_per_image: int
    sigma: str
    terms: dict[str, float] = field(default_factory=dict)
    wall_time_s: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def nats_to_bpd(nats: torch.Tensor | float, dims: int) -> torch.Tensor | float:
    """Nats per image -> bits per dimension: nats / (dims * ln 2)."""
    return nats / (dims * math.log(2.0))


def gaussian_kl(
    mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor
) -> torch.Tensor:
    """Element-wise KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))) in nats (broadcasts)."""
    return 0.5 * (
        -1.0
        + logvar2
        - logvar1
        + torch.exp(logvar1 - logvar2)
        + (mean1 - mean2) ** 2 * torch.exp(-logvar2)
    )


def _log_ndtr_diff(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log(Phi(b) - Phi(a)) for a < b, stable in both tails.

    Uses Phi(b) - Phi(a) = Phi(-a) - Phi(-b) to work on the side where both CDFs are small,
    then log(e^hi - e^lo) = hi + log(-expm1(lo - hi)).
    """
    flip = (a + b) > 0
    lo = torch.where(flip, -b, a)
    hi = torch.where(flip, -a, b)
    log_hi = torch.special.log_ndtr(hi)
    log_lo = torch.special.log_ndtr(lo)
    return log_hi + torch.log(-torch.expm1(log_lo - log_hi))


def discretized_gaussian_log_likelihood(
    x0: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor
) -> torch.Tensor:
    """Element-wise log P(x0) in nats under the discretised N(mean, exp(log_scale)^2): the bin
    of level x is [x - 1/255, x + 1/255], -1 gets (-inf, -1 + 1/255] and +1 [1 - 1/255, inf).
    From log-CDFs, not clamped at 1e-12, so a mean far from x0 gives an exact penalty."""
    inv_scale = torch.exp(-log_scale)
    a = (x0 - _HALF_BIN - mean) * inv_scale
    b = (x0 + _HALF_BIN - mean) * inv_scale
    left = torch.special.log_ndtr(b)  # x0 = -1: Phi(b)
    right = torch.special.log_ndtr(-a)  # x0 = +1: 1 - Phi(a)
    interior = _log_ndtr_diff(a, b)  # a < b: the scale is positive
    return torch.where(x0 < -_EDGE, left, torch.where(x0 > _EDGE, right, interior))


def _work_dtype(device: torch.device) -> torch.dtype:
    """float64 for the bound's arithmetic, except where the device has none (MPS)."""
    return torch.float32 if device.type == "mps" else torch.float64


def p_log_variance(diffusion: GaussianDiffusion, t: torch.Tensor, sigma: str) -> torch.Tensor:
    """log sigma_t^2 of p(x_{t-1} | x_t) for each t (B,): see the module docstring."""
    check_choice("nll.sigma", sigma, NLL_SIGMAS)
    if sigma == "beta_tilde":
        table = diffusion.posterior_log_variance_clipped
    else:  # "fixedlarge": beta_t, beta_0 -> beta_tilde_1 (the floor of the clipped log above)
        table = torch.cat([diffusion.posterior_log_variance_clipped[:1], diffusion.betas[1:].log()])
    return table[t]


def prior_nats(diffusion: GaussianDiffusion, x0: torch.Tensor) -> torch.Tensor:
    """L_prior = KL(q(x_{T-1} | x0) || N(0, I)) in nats (B,), for x0 (B, C, H, W) in [-1, 1]."""
    dtype = _work_dtype(x0.device)
    alpha_bar = diffusion.alpha_bar[-1].to(dtype)
    x0 = x0.to(dtype)
    kl = gaussian_kl(
        alpha_bar.sqrt() * x0, torch.log1p(-alpha_bar), x0.new_zeros(()), x0.new_zeros(())
    )
    return kl.flatten(1).sum(dim=1)


def vb_terms_from_output(
    diffusion: GaussianDiffusion,
    model_output: torch.Tensor,
    x0: torch.Tensor,
    x_t: torch.Tensor,
    t: torch.Tensor,
    sigma: str = "beta",
) -> torch.Tensor:
    """L_t for t >= 1 and L_0 (the decoder) for t = 0 from the network output for (x_t, t):
    (B,) nats summed over dimensions; ``t`` may mix timesteps."""
    dtype = _work_dtype(x0.device)
    x0, x_t = x0.to(dtype), x_t.to(dtype)
    x0_pred, _ = diffusion.model_to_x0_eps(model_output.to(dtype), x_t, t)
    log_var_p = p_log_variance(diffusion, t, sigma).to(dtype)  # (B,)

    # KL(q || p) summed over the D dimensions: q's and p's means share the x_t part, so
    # mu_tilde - mu_theta is exactly posterior_mean_coef1_t (x0 - x0_pred), and both
    # variances are isotropic. At t = 0 q is a point mass (beta_tilde_0 = 0): the floor only
    # keeps that unused entry finite.
    log_var_q = diffusion.beta_tilde[t].to(dtype).clamp(min=1e-20).log()
    coef1 = diffusion.posterior_mean_coef1[t].to(dtype)
    zero = log_var_p.new_zeros(())
    variance_part = x0[0].numel() * gaussian_kl(zero, log_var_q, zero, log_var_p)
    squared_error = (x0 - x0_pred).square().flatten(1).sum(dim=1)
    nats = variance_part + 0.5 * coef1.square() * squared_error * torch.exp(-log_var_p)

    rows = (t == 0).nonzero().squeeze(1)  # the decoder, only where needed
    if rows.numel():
        shape = (-1, *([1] * (x0.ndim - 1)))
        mean_p, _ = diffusion.q_posterior(x0_pred[rows], x_t[rows], t[rows])
        log_scale = 0.5 * log_var_p[rows].reshape(shape)
        decoder = -discretized_gaussian_log_likelihood(x0[rows], mean_p, log_scale)
        nats = nats.index_put((rows,), decoder.flatten(1).sum(dim=1))
    return nats


def vb_terms(
    model: Model,
    diffusion: GaussianDiffusion,
    x0: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor,
    sigma: str = "beta",
) -> torch.Tensor:
    """:func:`vb_terms_from_output` with x_t = q_sample(x0, t, noise), calling ``model(x_t, t)``."""
    x_t = diffusion.q_sample(x0, t, noise)
    return vb_terms_from_output(diffusion, model(x_t, t), x0, x_t, t, sigma)


def _check_args(model: Model, images, mode: str, k, batch_size, sigma: str) -> torch.Tensor:
    check_choice("nll.mode", mode, MODES)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise UserError(f"nll.timesteps={k!r} must be a positive integer (e.g. 32)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"nll.batch_size={batch_size!r} must be a positive integer (e.g. 256)")
    check_choice("nll.sigma", sigma, NLL_SIGMAS)
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
        dtype = getattr(images, "dtype", type(images).__name__)
        raise UserError(
            f"NLL images must be a uint8 tensor (N, C, H, W) of levels 0..255, got {dtype}; "
            "pass the raw pixels, not images scaled to [-1, 1]"
        )
    if images.ndim != 4 or images.shape[0] == 0:
        raise UserError(
            f"NLL images must have shape (N, C, H, W) with N >= 1, got {tuple(images.shape)}"
        )
    channels, size = getattr(model, "in_channels", None), getattr(model, "image_size", None)
    if channels is not None and size is not None and images.shape[1:] != (channels, size, size):
        raise UserError(
            f"NLL images have shape {tuple(images.shape[1:])} per image but the model expects "
            f"({channels}, {size}, {size}); evaluate on data of the model's data.image_size"
        )
    return images


def _stratified_timesteps(
    n: int, T: int, k: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, k) timesteps, one uniform draw in each of k contiguous strata of {1..T-1}, and the
    (k,) stratum sizes n_j: sum_j n_j L_{t_j} is unbiased for sum_{t=1}^{T-1} L_t."""
    bounds = torch.floor(torch.linspace(1, T, k + 1, dtype=torch.float64) + 0.5).long()
    sizes = bounds[1:] - bounds[:-1]  # >= 1 each because k <= T - 1
    u = torch.rand((n, k), generator=generator, dtype=torch.float64)
    offset = torch.minimum((u * sizes).long(), sizes - 1)
    return bounds[:-1] + offset, sizes.double()


def nll_bpd(
    model: Model,
    diffusion: GaussianDiffusion,
    images_uint8: torch.Tensor,
    mode: str = "sampled",
    timesteps_per_image: int = 32,
    batch_size: int = 256,
    seed: int = 0,
    device: torch.device | str = "cpu",
    sigma: str = "beta",
    progress: bool = True,
) -> NLLResult:
    """The variational bound on -log p(x0) in bits/dim, averaged over uint8 images.

    ``"full"``: all T terms per image; ``"sampled"``: L_prior + L_0 + the stratified estimate
    of sum_{t>=1} L_t from k = ``timesteps_per_image`` (capped at T - 1) timesteps, k + 1
    evaluations per image. Each term uses one x_t draw per image (``seed``), so "full" too is a
    one-sample estimate of the expectation over q. The model runs in eval mode, in float32.
    """
    start = time.perf_counter()
    images = _check_args(model, images_uint8, mode, timesteps_per_image, batch_size, sigma)
    device = torch.device(device)
    n, T = images.shape[0], diffusion.T
    dims = images[0].numel()

    if mode == "full":
        per_image = recorded = T
        t_table, weights = None, torch.ones(T, dtype=torch.float64)
    else:
        k = min(timesteps_per_image, T - 1)
        t_gen = torch.Generator().manual_seed(seed)
        strata_t, sizes = _stratified_timesteps(n, T, k, t_gen)
        t_table = torch.cat([torch.zeros(n, 1, dtype=torch.long), strata_t], dim=1)
        weights = torch.cat([torch.ones(1, dtype=torch.float64), sizes])
        per_image, recorded = k + 1, k

    noise_gen = torch.Generator(device).manual_seed(seed + 1)
    decoder, sum_l_t, prior = (torch.zeros(n, dtype=torch.float64) for _ in range(3))
    was_training = getattr(model, "training", None)
    if isinstance(model, torch.nn.Module):
        model.eval()
    try:
        with torch.inference_mode(), torch.autocast(device.type, enabled=False):
            for lo in range(0, n, batch_size):
                x0 = images[lo : lo + batch_size].to(device).float() / 127.5 - 1
                prior[lo : lo + batch_size] = prior_nats(diffusion, x0).cpu().double()
            total = n * per_image
            batches = range(0, total, batch_size)
            for lo in tqdm(batches, desc=f"NLL ({mode})", unit="batch", disable=not progress):
                pair = torch.arange(lo, min(lo + batch_size, total))
                index, pos = pair // per_image, pair % per_image
                t = pos if t_table is None else t_table[index, pos]
                x0 = images[index].to(device).float() / 127.5 - 1
                noise = torch.randn(x0.shape, generator=noise_gen, device=device)
                t_dev = t.to(device)
                x_t = diffusion.q_sample(x0, t_dev, noise)
                out = model(x_t, t_dev).float()
                nats = vb_terms_from_output(diffusion, out, x0, x_t, t_dev, sigma)
                nats = nats.cpu().double() * weights[pos]
                is_decoder = t == 0
                decoder.index_add_(0, index[is_decoder], nats[is_decoder])
                sum_l_t.index_add_(0, index[~is_decoder], nats[~is_decoder])
    finally:
        if isinstance(model, torch.nn.Module) and was_training:
            model.train()

    bpd = nats_to_bpd(prior + decoder + sum_l_t, dims)
    se = float(bpd.std(unbiased=True) / math.sqrt(n)) if n > 1 else float("nan")
    terms = {
        name: float(nats_to_bpd(value, dims).mean())
        for name, value in (("prior", prior), ("decoder", decoder), ("sum_L_t", sum_l_t))
    }
    return NLLResult(
        bpd=float(bpd.mean()),
        se=se,
        n_images=n,
        mode=mode,
        timesteps_per_image=recorded,
        sigma=sigma,
        terms=terms,
        wall_time_s=time.perf_counter() - start,
    )
