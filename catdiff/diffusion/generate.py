"""Many samples from one seed, in chunks, at a chosen precision: what ``catdiff.sample``,
``catdiff.evaluate`` and the periodic evaluation during training share.

Pure torch (no Lightning, no Hydra; ``catdiff.images`` is torch + Pillow):
``generate(DDIMSampler(steps=50), net, diffusion, n=1000, shape=(1, 28, 28), seed=0,
batch_size=500, device="cpu")`` works in a notebook.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import torch

from catdiff import precision as hardware
from catdiff.diffusion.gaussian import GaussianDiffusion
from catdiff.diffusion.samplers import Model, Sampler, sample
from catdiff.errors import UserError
from catdiff.images import to_uint8

PRECISIONS = ("fp32", "bf16", "auto")


class CastModel(torch.nn.Module):
    """``model`` with its weights cast once to ``dtype`` (not per call, as autocast does): x goes
    in as ``dtype`` and the output comes back as float32, so the sampler's own arithmetic (x_t,
    the x0 estimate, the solver's history) stays in float32."""

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model = model.to(dtype)
        self.dtype = dtype

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.dtype), t).float()


def pick_device(name: str) -> torch.device:
    """``auto`` (a CUDA GPU when there is one, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``;
    config key ``device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device={name} but no CUDA device is available: use device=cpu")
    return torch.device(name)


def with_precision(
    model: torch.nn.Module, precision: str, device: torch.device
) -> tuple[torch.nn.Module, str]:
    """(the network to sample with, the precision chosen): ``fp32`` as is, ``bf16`` a
    :class:`CastModel`, ``auto`` bf16 where the hardware runs it natively, else fp32."""
    if precision == "auto":
        precision = "bf16" if hardware.bf16_is_native(device) else "fp32"
    if precision == "fp32":
        return model, precision
    if precision == "bf16":
        return CastModel(model, torch.bfloat16), precision
    raise UserError(f"precision={precision} must be fp32, bf16 or auto")


def trajectory_timesteps(timesteps: list[int], count: int = 6) -> list[int]:
    """``count`` evenly spaced timesteps the chain visits, noisiest first."""
    picks = torch.linspace(0, len(timesteps) - 1, count).round().long().unique().tolist()
    return [timesteps[i] for i in picks]


def generate(
    sampler: Sampler,
    model: Model,
    diffusion: GaussianDiffusion,
    n: int,
    shape: tuple[int, ...],
    seed: int,
    batch_size: int,
    device: torch.device | str,
    record: Iterable[int] = (),
    progress: bool = True,
) -> tuple[torch.Tensor, dict[int, torch.Tensor], float]:
    """n samples as uint8 (n, C, H, W) on the CPU, x_t at ``record`` (first chunk), seconds.

    One seed per chunk of ``batch_size``, derived from (seed, chunk index): the same call gives
    the same images, and the first k images do not depend on n (as long as batch_size is kept).
    ``model`` and ``diffusion`` must already be on ``device``, the model in eval mode.
    """
    start = time.perf_counter()
    record = tuple(record)
    chunks, trajectory = [], {}
    for i, first in enumerate(range(0, n, batch_size)):
        count = min(batch_size, n - first)
        result = sample(
            sampler,
            model,
            diffusion,
            count,
            shape,
            seed=seed * 1_000_003 + i,
            device=device,
            record=record if i == 0 else (),
            progress=progress,
        )
        chunks.append(to_uint8(result.x0).cpu())
        trajectory = trajectory or {t: x.cpu() for t, x in result.trajectory.items()}
    return torch.cat(chunks), trajectory, time.perf_counter() - start
