"""Diffusion maths in pure torch: schedules, the Gaussian process, losses, samplers.

Symbols follow the seed notes (beta_t, alpha_t, alpha_bar_t, beta_tilde_t, mu_tilde_t);
timesteps are 0-based as in diffusers (t = 0 is the first noising step).

    betas = make_betas("cosine", T=1000)
    diffusion = GaussianDiffusion(betas, objective="eps", loss="l1")
    images = sample(DDIMSampler(steps=50), unet, diffusion, n=16, shape=(1, 28, 28)).x0
"""

from catdiff.diffusion.gaussian import (
    OBJECTIVES,
    SIGMAS,
    GaussianDiffusion,
    check_objective,
    check_sigma,
)
from catdiff.diffusion.losses import LOSSES, check_loss, elementwise_loss
from catdiff.diffusion.samplers import (
    SPACINGS,
    DDIMSampler,
    DDPMSampler,
    DPMSolverSampler,
    Sampler,
    SampleResult,
    ddim_step,
    ddim_timesteps,
    logsnr_timesteps,
    sample,
)
from catdiff.diffusion.schedules import SCHEDULES, make_betas

__all__ = [
    "LOSSES",
    "OBJECTIVES",
    "SCHEDULES",
    "SIGMAS",
    "SPACINGS",
    "DDIMSampler",
    "DDPMSampler",
    "DPMSolverSampler",
    "GaussianDiffusion",
    "SampleResult",
    "Sampler",
    "check_loss",
    "check_objective",
    "check_sigma",
    "ddim_step",
    "ddim_timesteps",
    "logsnr_timesteps",
    "elementwise_loss",
    "make_betas",
    "sample",
]
