"""A tiny model on 8 images must drive the training loss well below where it started."""

from __future__ import annotations

import torch

from catdiff.data import synthetic_cats
from catdiff.diffusion import GaussianDiffusion, make_betas
from catdiff.models import UNet


def fixed_loss(model: UNet, diffusion: GaussianDiffusion, x0: torch.Tensor) -> float:
    """Loss on fixed (t, noise) draws, so before/after differ only by the model."""
    g = torch.Generator().manual_seed(123)
    x = x0.repeat(8, 1, 1, 1)
    t = diffusion.sample_timesteps(len(x), x.device, generator=g)
    noise = torch.randn(x.shape, generator=g)
    with torch.no_grad():
        return (
            diffusion.loss_per_sample(model(diffusion.q_sample(x, t, noise), t), x, t, noise)
            .mean()
            .item()
        )


def test_tiny_model_overfits_eight_images() -> None:
    torch.manual_seed(0)
    x0 = synthetic_cats(8, 28, seed=0).float() / 127.5 - 1
    diffusion = GaussianDiffusion(make_betas("linear", 50), objective="eps", loss="l1")
    model = UNet(
        base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_levels=(), norm_groups=4
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    before = fixed_loss(model, diffusion, x0)
    for _ in range(200):
        x = x0.repeat(2, 1, 1, 1)
        t = diffusion.sample_timesteps(len(x), x.device)
        noise = torch.randn_like(x)
        loss = diffusion.loss_per_sample(
            model(diffusion.q_sample(x, t, noise), t), x, t, noise
        ).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = fixed_loss(model, diffusion, x0)
    assert after < 0.5 * before, (before, after)
