"""One call from config values to a :class:`GaussianDiffusion` (what ``conf/diffusion`` builds)."""

from __future__ import annotations

from typing import Any

from catdiff.diffusion.gaussian import GaussianDiffusion
from catdiff.diffusion.schedules import make_betas


def build_diffusion(
    schedule: str = "linear",
    T: int = 1000,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    **options: Any,
) -> GaussianDiffusion:
    """``GaussianDiffusion(make_betas(schedule, T, beta_start, beta_end), **options)``; options
    are GaussianDiffusion's keywords (objective, loss, loss_weight, t_sampling, ...)."""
    betas = make_betas(schedule, T, beta_start=beta_start, beta_end=beta_end)
    return GaussianDiffusion(betas, **options)
