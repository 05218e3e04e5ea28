"""One call from config values to a :class:`GaussianDiffusion` (what ``conf/diffusion`` builds)."""

from __future__ import annotations

from catdiff.diffusion.gaussian import GaussianDiffusion
from catdiff.diffusion.schedules import make_betas


def build_diffusion(
    schedule: str = "linear",
    T: int = 1000,
    objective: str = "eps",
    loss: str = "l1",
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    huber_delta: float = 1.0,
    loss_weight: str = "none",
    min_snr_gamma: float = 5.0,
    t_sampling: str = "uniform",
    t_p_mean: float = -1.2,
    t_p_std: float = 1.2,
) -> GaussianDiffusion:
    """``GaussianDiffusion(make_betas(schedule, T, beta_start, beta_end), objective, loss, ...)``."""
    betas = make_betas(schedule, T, beta_start=beta_start, beta_end=beta_end)
    return GaussianDiffusion(
        betas,
        objective=objective,
        loss=loss,
        huber_delta=huber_delta,
        loss_weight=loss_weight,
        min_snr_gamma=min_snr_gamma,
        t_sampling=t_sampling,
        t_p_mean=t_p_mean,
        t_p_std=t_p_std,
    )
