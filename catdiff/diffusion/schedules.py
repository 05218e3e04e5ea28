"""Variance schedules: the betas beta_t of the forward process.

The forward process adds noise in T steps, x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) z.
A schedule is the (T,) vector of beta_t. Timesteps are 0-based, as in diffusers'
DDPMScheduler: beta[0] is the first noising step and alpha_bar[t] = prod_{i<=t} (1 - beta_i).

Schedules are built in float64 so that the cumulative product alpha_bar_t stays accurate over
1000 steps; GaussianDiffusion casts the derived buffers to float32 afterwards.
"""

import math
from collections.abc import Callable

import torch

from catdiff.diffusion.named import resolve
from catdiff.errors import UserError

# Nichol & Dhariwal 2021: small offset s keeps beta_0 from being vanishingly small.
_COSINE_S = 0.008
# Nichol & Dhariwal 2021: clip betas below 1 to avoid a singularity near t = T.
_COSINE_MAX_BETA = 0.999


def _linear(T: int, beta_start: float, beta_end: float) -> torch.Tensor:
    # Ho et al. 2020 (DDPM) and the seed: betas evenly spaced from 1e-4 to 0.02.
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)


def _cosine(T: int) -> torch.Tensor:
    # Nichol & Dhariwal 2021: alpha_bar(t) = cos^2((t/T + s) / (1 + s) * pi/2), and
    # beta_t = 1 - alpha_bar(t+1) / alpha_bar(t); same as diffusers' "squaredcos_cap_v2".
    u = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((u + _COSINE_S) / (1 + _COSINE_S) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=_COSINE_MAX_BETA)


def _quadratic(T: int, beta_start: float, beta_end: float) -> torch.Tensor:
    # Rombach et al. 2022 (latent diffusion): evenly spaced in sqrt(beta); diffusers' "scaled_linear".
    return torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=torch.float64) ** 2


def _sigmoid(T: int, beta_start: float, beta_end: float) -> torch.Tensor:
    # Xu et al. 2022 (GeoDiff): betas follow a sigmoid from beta_start to beta_end, flat at both ends.
    x = torch.linspace(-6, 6, T, dtype=torch.float64)
    return torch.sigmoid(x) * (beta_end - beta_start) + beta_start


def _rectified_flow(T: int) -> torch.Tensor:
    # Rectified flow (Liu et al. 2023; Esser et al. 2024): x_r = (1 - r) x0 + r eps, its times
    # r evenly spaced, r_t = (t + 1) / (T + 1) (r = 1, pure noise, would make beta = 1). As a
    # variance-preserving process x_t = x_r / sqrt((1 - r)^2 + r^2), so alpha_bar_t =
    # (1 - r_t)^2 / ((1 - r_t)^2 + r_t^2) (catdiff.diffusion.objectives: r = s / (a + s)).
    r = torch.arange(1, T + 1, dtype=torch.float64) / (T + 1)
    alpha_bar = (1 - r).square() / ((1 - r).square() + r.square())
    return 1 - alpha_bar / torch.cat([alpha_bar.new_ones(1), alpha_bar[:-1]])


BUILTIN: dict[str, Callable[..., torch.Tensor]] = {
    "linear": _linear,
    "cosine": lambda T, beta_start, beta_end: _cosine(T),  # ignores the endpoints
    "quadratic": _quadratic,
    "sigmoid": _sigmoid,
    "rectified_flow": lambda T, beta_start, beta_end: _rectified_flow(T),  # ignores them too
}
SCHEDULES = tuple(BUILTIN)


def make_betas(name: str, T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """The betas beta_t, t = 0..T-1, of the named schedule: float64 (T,), values in (0, 1).

    Args:
        name: one of ``SCHEDULES`` (``diffusion.schedule``; each is described above), or the
            import path of a function ``f(T, beta_start, beta_end) -> (T,) tensor``
            (:mod:`catdiff.diffusion.named`): a new schedule is its own module.
        T: number of diffusion steps (config key ``diffusion.T``), at least 1.
        beta_start, beta_end: beta_0 and beta_{T-1} of linear, quadratic and sigmoid (cosine
            ignores them, as does rectified_flow), in (0, 1).
    """
    schedule = resolve(name, BUILTIN, "diffusion.schedule")
    if not isinstance(T, int) or isinstance(T, bool) or T < 1:
        raise UserError(f"diffusion.T={T!r} must be a positive integer (e.g. 1000)")
    for key, value in (("beta_start", beta_start), ("beta_end", beta_end)):
        if not 0 < value < 1:
            raise UserError(f"diffusion.{key}={value!r} must lie in (0, 1) (e.g. 1e-4, 0.02)")
    betas = torch.as_tensor(schedule(T, beta_start, beta_end), dtype=torch.float64)
    if betas.shape != (T,) or not bool(((betas > 0) & (betas < 1)).all()):
        raise UserError(
            f"diffusion.schedule={name} must give T={T} betas in (0, 1), "
            f"not shape {tuple(betas.shape)} with range [{betas.min():.3g}, {betas.max():.3g}]"
        )
    return betas
