"""catdiff's training step, timed through a plain torch loop over the real objects.

One step is what ``DiffusionModule`` does under Lightning with the default config: the loss
of its ``training_step`` (``_losses``: uniform t and noise from a per-step generator,
``q_sample``, the UNet, L1 loss on eps), backward, gradient-norm clipping at 1.0
(``conf/trainer/default.yaml``), the AdamW step of ``conf/module/default.yaml`` and the EMA
update of its ``optimizer_step``. What ``training_step`` adds around the loss (logging, the
trainer-bound seed) needs a Trainer; it is part of the Lightning overhead that
:func:`lightning_step_times` measures.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import torch

from catdiff.diffusion.build import build_diffusion
from catdiff.lightning import CatDataModule, DiffusionModule
from catdiff.models import UNet

# conf/module/default.yaml (optimizer, ema_decay) and conf/trainer/default.yaml (gradient_clip_val).
ADAMW_KWARGS = {"lr": 5.0e-4, "weight_decay": 0.0, "betas": (0.9, 0.999)}
EMA_DECAY = 0.999
GRAD_CLIP = 1.0

# torch.optim.AdamW implementations: the config's default (a per-tensor loop on CPU), and the
# multi-tensor and fused kernels it can be switched to with foreach=true / fused=true.
OPTIMIZERS = {
    "adamw": {},
    "adamw-foreach": {"foreach": True},
    "adamw-fused": {"fused": True},
}


def autocast(precision: str) -> contextlib.AbstractContextManager:
    """fp32: no autocast; bf16: CPU autocast to bfloat16 (what Lightning's bf16-mixed does)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    raise ValueError(f"precision must be fp32 or bf16, got {precision!r}")


# The bench's precision names as Lightning's trainer.precision.
LIGHTNING_PRECISION = {"fp32": "32-true", "bf16": "bf16-mixed"}


def build_module(
    model_kwargs: dict[str, Any], optimizer: str = "adamw", channels_last: bool = False
) -> DiffusionModule:
    """A DiffusionModule around ``UNet(**model_kwargs)`` and the default diffusion (linear, T=1000)."""
    torch.manual_seed(0)
    return DiffusionModule(
        model=UNet(**model_kwargs),
        diffusion=build_diffusion(),
        optimizer=partial(torch.optim.AdamW, **ADAMW_KWARGS, **OPTIMIZERS[optimizer]),
        ema_decay=EMA_DECAY,
        channels_last=channels_last,
    )


def image_batch(batch_size: int, image_size: int = 28, channels: int = 1) -> torch.Tensor:
    """A fixed batch of images in [-1, 1] (speed does not depend on the pixels)."""
    g = torch.Generator().manual_seed(0)
    return torch.rand(batch_size, channels, image_size, image_size, generator=g) * 2 - 1


def train_step_fn(
    module: DiffusionModule,
    precision: str,
    batches: Callable[[], torch.Tensor],
) -> Callable[[], None]:
    """One training step of ``module`` on the batch ``batches()`` returns; the optimiser is built once."""
    optimizer = module.configure_optimizers()
    params = list(module.model.parameters())
    steps = itertools.count()

    def step() -> None:
        x0 = batches()
        optimizer.zero_grad(set_to_none=True)
        generator = torch.Generator(x0.device).manual_seed(next(steps))
        with autocast(precision):
            loss = module._losses(module._train_net(), x0, generator=generator)[0].mean()
        if not torch.isfinite(loss):  # training_step's NaN guard (a host sync)
            raise RuntimeError(f"benchmark loss became {loss.item()}")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
        optimizer.step()
        module.ema.update(module.model)

    return step


# ---- Lightning's own cost per step ---------------------------------------------------------


def datamodule_for(images: torch.Tensor, batch_size: int) -> CatDataModule:
    """A CatDataModule serving ``images`` (uint8) without loading anything."""
    dm = CatDataModule(source="synthetic", batch_size=batch_size, flip=True)
    dm.train_images, dm.val_images = images, images[:batch_size]
    return dm


def endless_batches(
    dm: CatDataModule, device: torch.device | str = "cpu"
) -> Callable[[], torch.Tensor]:
    """``next_batch()``: the datamodule's next training batch, moved to ``device``, after its
    uint8 -> [-1, 1] + flip (what the training loop draws).

    ``on_after_batch_transfer`` flips only while ``dm.trainer.training``; outside a Trainer a
    stand-in object says so, so the real transform runs.
    """
    dm.trainer = _TrainingStandIn()
    loader = dm.train_dataloader()

    def epochs() -> Iterator[torch.Tensor]:
        epoch = 0
        while True:
            dm.set_epoch(epoch)
            yield from loader
            epoch += 1

    stream = epochs()
    return lambda: dm.on_after_batch_transfer(next(stream).to(device, non_blocking=True), 0)


class _TrainingStandIn:
    training = True


def lightning_step_times(
    model_kwargs: dict[str, Any],
    images: torch.Tensor,
    batch_size: int,
    precision: str,
    steps: int,
) -> list[float]:
    """Seconds between consecutive training batches inside ``Trainer.fit`` (``steps`` intervals).

    The Trainer matches the default config (gradient clipping 1.0, no validation) minus
    logging to disk, checkpoints and the progress bar, so the intervals hold the same work as
    the plain loop plus Lightning's hooks, loop and data-loader plumbing.
    """
    import lightning as L

    times: list[float] = []

    class StepTimer(L.Callback):
        def on_train_batch_start(self, *args: Any) -> None:
            times.append(time.perf_counter())

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        precision=LIGHTNING_PRECISION[precision],
        max_steps=steps + 1,
        gradient_clip_val=GRAD_CLIP,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[StepTimer()],
    )
    trainer.fit(build_module(model_kwargs), datamodule=datamodule_for(images, batch_size))
    return [b - a for a, b in zip(times, times[1:])]
