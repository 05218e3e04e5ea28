"""catdiff's samplers, timed on the first ``timed_steps`` timesteps of their real chain.

Every step of a chain costs the same (one UNet forward on the whole batch plus a few
elementwise ops), so a long chain (DDPM's 1,000 steps) is timed over its first steps and
scaled up; the report labels such figures as extrapolated.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from catdiff.diffusion import (
    DDIMSampler,
    DDPMSampler,
    DPMSolverSampler,
    GaussianDiffusion,
    sample,
)
from catdiff.diffusion.generate import with_precision

Sampler = DDPMSampler | DDIMSampler | DPMSolverSampler


def _first_steps(sampler: Sampler, k: int) -> Sampler:
    """Make ``sampler`` visit only the first ``k`` timesteps of its chain (same per-step work)."""
    full = sampler.timesteps
    sampler.timesteps = lambda diffusion: full(diffusion)[:k]  # type: ignore[method-assign]
    return sampler


def sampler_for(kind: str, steps: int, timed_steps: int) -> Sampler:
    """The config's sampler (``conf/sampler/{ddpm,ddim,dpm_solver}.yaml``), cut to its first
    ``timed_steps``."""
    if kind == "ddpm":
        return _first_steps(DDPMSampler(), timed_steps)
    if kind == "ddim":
        return _first_steps(DDIMSampler(steps=steps), timed_steps)
    if kind == "dpm":
        return _first_steps(DPMSolverSampler(steps=steps), timed_steps)
    raise ValueError(f"sampler kind must be ddpm, ddim or dpm, got {kind!r}")


def sample_fn(
    model: torch.nn.Module,
    diffusion: GaussianDiffusion,
    sampler: Sampler,
    n: int,
    precision: str,
    shape: tuple[int, int, int] = (1, 28, 28),
) -> Callable[[], torch.Tensor]:
    """One call = ``catdiff.diffusion.sample`` of n images (it runs under inference_mode), with
    the network ``python -m catdiff.sample precision=...`` uses: bf16 = weights cast once."""
    net, _ = with_precision(model.eval(), precision, torch.device("cpu"))

    def run() -> torch.Tensor:
        return sample(sampler, net, diffusion, n, shape, seed=0).x0

    return run
