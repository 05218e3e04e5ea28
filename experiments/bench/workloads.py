"""The timed work of the bench's comparisons, built from plain arguments.

One place builds a training step or a sampling chain of catdiff or diffusers, so the bench's
process and a spawned one (``experiments.bench.own_process``, which calls these by name) time
exactly the same work. Every function returns a callable that does one step or one chain.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from catdiff.diffusion.build import build_diffusion
from catdiff.models import UNet
from experiments.bench import peer, sampling, train_speed


def train_step(
    tool: str,
    unet_kwargs: dict[str, Any],
    precision: str,
    batch: int,
    optimizer: str = "adamw",
    channels_last: bool = False,
    compile: bool = False,
) -> Callable[[], None]:
    """One training step on a fixed batch. ``optimizer``, ``channels_last`` and ``compile`` are
    catdiff's options (diffusers' step is its ``train_unconditional.py`` recipe: peer.py)."""
    x0 = train_speed.image_batch(batch)
    if tool == "diffusers":
        return peer.train_step_fn(peer.build_unet(unet_kwargs), precision, lambda: x0)
    module = train_speed.build_module(unet_kwargs, optimizer, channels_last)
    module.compile = compile
    return train_speed.train_step_fn(module, precision, lambda: x0)


def sample_chain(
    tool: str,
    unet_kwargs: dict[str, Any],
    kind: str,
    steps: int,
    timed_steps: int,
    n: int,
    precision: str,
) -> Callable[[], object]:
    """The first ``timed_steps`` of a ``steps``-evaluation chain of ``kind`` for n images
    (diffusers: DDIM only)."""
    if tool == "diffusers":
        if kind != "ddim":
            raise ValueError(f"diffusers is timed with DDIM only, not {kind!r}")
        return peer.ddim_sample_fn(peer.build_unet(unet_kwargs), steps, timed_steps, n, precision)
    torch.manual_seed(0)
    net = UNet(**unet_kwargs)
    sampler = sampling.sampler_for(kind, steps, timed_steps)
    return sampling.sample_fn(net, build_diffusion(), sampler, n, precision)


BUILDERS: dict[str, Callable[..., Callable[[], object]]] = {
    "train_step": train_step,
    "sample_chain": sample_chain,
}
