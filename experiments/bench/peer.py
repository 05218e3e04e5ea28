"""The same work in diffusers: ``UNet2DModel`` + ``DDPMScheduler.add_noise`` + MSE, and DDIM.

The training step is diffusers' ``train_unconditional.py`` recipe on the bench's settings:
uniform t, ``add_noise``, the model, MSE on eps, backward, gradient clipping at 1.0, the same
AdamW as catdiff, and diffusers' ``EMAModel`` (decay 0.999, its (1 + n) / (10 + n) warm-up).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from experiments.bench.flops import DTYPES
from experiments.bench.train_speed import ADAMW_KWARGS, EMA_DECAY, GRAD_CLIP, autocast

# The diffusers UNet the issue names: 1,623,169 parameters, attention at 7x7.
DIFFUSERS_UNET = {
    "sample_size": 28,
    "in_channels": 1,
    "out_channels": 1,
    "layers_per_block": 2,
    "block_out_channels": (32, 64, 64),
    "down_block_types": ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
    "up_block_types": ("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
}
T = 1000


def build_unet(kwargs: dict[str, Any]) -> torch.nn.Module:
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel(**kwargs)


def forward_fn(model: torch.nn.Module) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``net(x_t, t) -> eps`` like catdiff's UNet (diffusers returns an output object)."""
    return lambda x, t: model(x, t).sample


def train_step_fn(
    model: torch.nn.Module,
    precision: str,
    batches: Callable[[], torch.Tensor],
) -> Callable[[], None]:
    """One diffusers training step on the batch ``batches()`` returns."""
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel

    model.train()
    scheduler = DDPMScheduler(num_train_timesteps=T)
    optimizer = torch.optim.AdamW(model.parameters(), **ADAMW_KWARGS)
    ema = EMAModel(model.parameters(), decay=EMA_DECAY, foreach=True)
    params = list(model.parameters())

    def step() -> None:
        x0 = batches()
        noise = torch.randn_like(x0)
        t = torch.randint(0, T, (x0.shape[0],), dtype=torch.long)
        x_t = scheduler.add_noise(x0, noise, t)
        optimizer.zero_grad(set_to_none=True)
        with autocast(precision):
            prediction = model(x_t, t).sample
        loss = F.mse_loss(prediction.float(), noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
        optimizer.step()
        ema.step(model.parameters())

    return step


def ddim_sample_fn(
    model: torch.nn.Module, steps: int, timed_steps: int, n: int, precision: str
) -> Callable[[], torch.Tensor]:
    """DDIMScheduler with catdiff's DDIM settings (linear betas, trailing spacing, clip x0,
    eta 0), run over the first ``timed_steps`` of its ``steps`` timesteps. bf16 as a diffusers
    user runs it, and as catdiff's ``precision=bf16`` does: the UNet cast once
    (``unet.to(torch.bfloat16)``), the scheduler's arithmetic in fp32."""
    from diffusers import DDIMScheduler

    model.eval()
    dtype = DTYPES[precision]
    model.to(dtype)
    scheduler = DDIMScheduler(num_train_timesteps=T, clip_sample=True, timestep_spacing="trailing")
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps[:timed_steps]
    shape = (n, model.config.in_channels, model.config.sample_size, model.config.sample_size)

    @torch.inference_mode()
    def run() -> torch.Tensor:
        x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
        for t in timesteps:
            eps = model(x.to(dtype), t).sample.float()
            x = scheduler.step(eps, t, x).prev_sample
        return x

    return run
