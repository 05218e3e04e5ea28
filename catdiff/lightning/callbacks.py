"""Callbacks: sample grids during training, throughput, and saving work when a run crashes."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only

from catdiff.images import grid, save_png, to_uint8

log = logging.getLogger(__name__)


class SampleGrid(Callback):
    """Every ``every_n_steps`` (and at the end of training), sample ``n`` images with the EMA
    weights from a fixed seed and write ``<dirpath>/step_XXXXXXX.png``; also sent to loggers
    that take images (W&B, TensorBoard) as uint8.

    A fixed seed means successive grids show the same noise being denoised by a better model.
    ``sampler`` is usually a few-step sampler (DDIM 50) so grids cost seconds, not minutes.
    """

    def __init__(
        self,
        dirpath: str,
        every_n_steps: int = 1000,
        n: int = 64,
        seed: int = 0,
        sampler: Any = None,
    ) -> None:
        self.dirpath = Path(dirpath)
        self.every_n_steps = every_n_steps
        self.n = n
        self.seed = seed
        self.sampler = sampler
        self._last_step = -1

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any
    ) -> None:
        step = trainer.global_step
        if self.every_n_steps > 0 and step % self.every_n_steps == 0 and step != self._last_step:
            self._write(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step != self._last_step:
            self._write(trainer, pl_module)

    @rank_zero_only
    def _write(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = trainer.global_step
        self._last_step = step
        images = to_uint8(pl_module.sample(self.n, seed=self.seed, sampler=self.sampler).x0)
        picture = grid(images)
        path = save_png(picture, self.dirpath / f"step_{step:07d}.png")
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):  # W&B
                logger.log_image(key="samples", images=[picture], step=step)
            elif hasattr(getattr(logger, "experiment", None), "add_image"):  # TensorBoard
                logger.experiment.add_image(
                    "samples", picture, step, dataformats="HW" if picture.ndim == 2 else "HWC"
                )
        log.info("sample grid at step %d: %s", step, path)


class Throughput(Callback):
    """Logs training images per second (``train/img_per_s``) over each logging window.

    Timing across a window of steps, not per step, so it adds no host synchronisation.
    """

    def __init__(self, every_n_steps: int = 50) -> None:
        self.every_n_steps = every_n_steps
        self._t0: float | None = None
        self._images = 0

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        self._images += batch.shape[0] * trainer.world_size
        if self._t0 is None:  # the first step carries warm-up costs: start the clock after it
            self._t0, self._images = time.perf_counter(), 0
            return
        if trainer.global_step % self.every_n_steps == 0 and self._images:
            rate = self._images / (time.perf_counter() - self._t0)
            pl_module.log(
                "train/img_per_s", rate, on_step=True, on_epoch=False, rank_zero_only=True
            )
            self._t0, self._images = time.perf_counter(), 0

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = None  # do not count validation time as training time


class LastCheckpoint(Callback):
    """Keeps ``last.ckpt`` current where ModelCheckpoint does not: at the end of training (when
    max_steps is not a multiple of the validation interval) and on a crash or Ctrl-C, so
    nothing is lost -- except when the loss went non-finite: then the weights may be bad and
    the last good checkpoint must stay."""

    def __init__(self, dirpath: str, filename: str = "last.ckpt") -> None:
        self.path = Path(dirpath) / filename

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)  # full state: resumable

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        from catdiff.lightning.module import NonFiniteLossError

        if isinstance(exception, NonFiniteLossError) or trainer.global_step == 0:
            return
        trainer.save_checkpoint(self.path, weights_only=False)  # full state: resumable
        log.warning(
            "run interrupted (%s): saved %s at step %d",
            type(exception).__name__,
            self.path,
            trainer.global_step,
        )
