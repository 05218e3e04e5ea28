"""Callbacks: sample grids during training, throughput, and saving work on a crash or preemption."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only

from catdiff.files import save_torch
from catdiff.images import grid, save_png, to_uint8

log = logging.getLogger(__name__)


class SampleGrid(Callback):
    """Every ``every_n_steps`` and at the end, ``n`` EMA samples from a fixed seed (the same
    noise denoised by a better model) to ``<dirpath>/step_XXXXXXX.png`` and the loggers."""

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
    """Logs ``train/img_per_s`` over each window of steps (no host synchronisation)."""

    def __init__(self, every_n_steps: int = 50) -> None:
        self.every_n_steps = every_n_steps
        self._t0: float | None = None
        self._images = 0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, *args: Any
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


class Snapshots(Callback):
    """Every ``every_n_steps`` (0 = off) and at the end, the EMA weights alone to
    ``<dirpath>/step<N>.ckpt`` and a row to ``snapshots.csv``: step, images seen, wall time
    since the start of ``fit`` (validation included; a resumed run continues it), so metrics
    can be scored against them after training.
    """

    def __init__(self, dirpath: str | Path, every_n_steps: int = 0) -> None:
        if every_n_steps < 0:
            raise ValueError(f"callbacks.snapshots.every_n_steps={every_n_steps} must be >= 0")
        self.dirpath = Path(dirpath)
        self.every_n_steps = every_n_steps
        self._t0 = 0.0
        self._last_saved = -1

    @property
    def csv_path(self) -> Path:
        return self.dirpath / "snapshots.csv"

    def _last_row(self) -> tuple[int, float]:
        """(step, wall_s) of the last snapshot written, (-1, 0.0) if none."""
        rows = self.csv_path.read_text().strip().splitlines()[1:] if self.csv_path.is_file() else []
        if not rows:
            return -1, 0.0
        step, _, wall = rows[-1].split(",")
        return int(step), float(wall)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step, wall = self._last_row() if trainer.global_step > 0 else (-1, 0.0)
        self._t0 = time.perf_counter() - wall
        self._last_saved = step  # a finished run started again does not snapshot its end twice

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, *args: Any
    ) -> None:
        step = trainer.global_step
        if self.every_n_steps and step % self.every_n_steps == 0:
            self._save(trainer, pl_module, batch.shape[0])
        self._batch = batch.shape[0]

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.every_n_steps:
            self._save(trainer, pl_module, getattr(self, "_batch", 0))

    @rank_zero_only
    def _save(self, trainer: L.Trainer, pl_module: L.LightningModule, batch_size: int) -> None:
        step = trainer.global_step
        if step == self._last_saved:
            return
        wall = time.perf_counter() - self._t0
        self._last_saved = step
        self.dirpath.mkdir(parents=True, exist_ok=True)
        images_seen = step * batch_size * trainer.world_size
        state = {f"ema.{k}": v for k, v in pl_module.ema.state_dict().items()}
        checkpoint = {
            "catdiff": {"config": pl_module.run_config, "image_shape": list(pl_module.image_shape)},
            "state_dict": state,
            "global_step": step,
            "images_seen": images_seen,
            "wall_s": wall,
        }
        path = self.dirpath / f"step{step:07d}.ckpt"
        save_torch(checkpoint, path)  # beside its final name, fsynced, renamed: never partial
        new = not self.csv_path.is_file()
        with self.csv_path.open("a") as f:
            if new:
                f.write("step,images_seen,wall_s\n")
            f.write(f"{step},{images_seen},{wall:.2f}\n")
        self._t0 = time.perf_counter() - wall  # writing is not training time


class LastCheckpoint(Callback):
    """Keeps ``last.ckpt`` current where ModelCheckpoint does not:

    * at the end of training;
    * on a crash or Ctrl-C, unless the loss went non-finite (the last good checkpoint stays);
    * on ``requeue_signal`` (SLURM's preemption or time-limit signal): save and stop at the next
      step; after ``fit`` :meth:`requeue_if_signalled` requeues the job (submitit or
      ``scontrol requeue``), which resumes from ``last.ckpt``. Outside SLURM: save and stop;
    * on SIGTERM: under SLURM save and train on; elsewhere save, stop and exit 143.

    The signals only set a flag; the save happens between steps, where all state agrees. Under
    DDP the ranks agree on the flag every ``DDP_CHECK_EVERY`` steps (one all-reduce).
    """

    _TERMINATE, _REQUEUE = 1, 2
    DDP_CHECK_EVERY = 10

    def __init__(
        self, dirpath: str, filename: str = "last.ckpt", requeue_signal: str | None = "SIGUSR2"
    ) -> None:
        self.path = Path(dirpath) / filename
        self.requeue_signal = signal.Signals[requeue_signal] if requeue_signal else None
        # Once acted upon: "requeue", "stop" (requeue signal outside SLURM) or "terminate".
        self.stop_reason: str | None = None
        self._received = 0
        self._saved_step = -1
        self._previous: dict[signal.Signals, Any] = {}

    # ------------------------------------------------------------------ signals
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.stop_reason, self._received, self._saved_step = None, 0, -1
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        wanted = [signal.SIGTERM] + ([self.requeue_signal] if self.requeue_signal else [])
        for signum in wanted:
            # Lightning's SIGTERM handler would raise mid-epoch without saving; submitit's
            # requeue handler is kept and called once the checkpoint is on disk.
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        code = self._REQUEUE if signum == self.requeue_signal else self._TERMINATE
        self._received = max(self._received, code)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for signum, handler in self._previous.items():
            if signal.getsignal(signum) == self._on_signal and handler is not None:
                signal.signal(signum, handler)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any
    ) -> None:
        code = self._received
        if trainer.world_size > 1:  # every rank must take the same decision at the same step
            if trainer.global_step % self.DDP_CHECK_EVERY:
                return
            flag = torch.tensor(code, device=pl_module.device)
            code = int(trainer.strategy.reduce(flag, reduce_op="max"))
        if not code:
            return
        self._received = 0
        in_slurm = "SLURM_JOB_ID" in os.environ
        for logger in trainer.loggers:  # metrics up to now on disk with the checkpoint
            logger.save()
        trainer.save_checkpoint(self.path, weights_only=False)
        self._saved_step = trainer.global_step
        if code == self._TERMINATE and in_slurm:
            if trainer.is_global_zero:
                log.warning("SIGTERM: saved %s at step %d", self.path, trainer.global_step)
            return
        requeue = "requeue" if in_slurm else "stop"
        self.stop_reason = requeue if code == self._REQUEUE else "terminate"
        # Stop as if this were the last step (`should_stop` would run an extra validation).
        trainer.fit_loop.epoch_loop.max_steps = trainer.global_step
        for callback in trainer.checkpoint_callbacks:  # ModelCheckpoint would save its own last
            callback.save_last = False  # .ckpt at train end, after the epoch is closed: too late
        if self.stop_reason == "requeue" and trainer.is_global_zero:
            for logger in trainer.loggers:  # W&B shows the run as preempted, not crashed
                mark = getattr(getattr(logger, "experiment", None), "mark_preempting", None)
                if callable(mark):
                    mark()
        if trainer.is_global_zero:
            log.warning(
                "signal received: saved %s at step %d and stopping%s",
                self.path,
                trainer.global_step,
                " to requeue" if self.stop_reason == "requeue" else "",
            )

    def requeue_if_signalled(self, rank: int = 0) -> None:
        """After ``fit``: requeue and exit if the requeue signal stopped it under SLURM, exit
        143 if SIGTERM did, else return (``SystemExit`` tells submitit the job is unfinished)."""
        if self.stop_reason in (None, "stop"):
            return
        if self.stop_reason == "terminate":
            raise SystemExit(143)
        submitit_handler = self._previous.get(self.requeue_signal)
        if callable(submitit_handler):
            # rank 0 requeues and exits in it; other ranks return and exit below
            submitit_handler(int(self.requeue_signal), None)
        elif rank == 0:
            job = os.environ.get("SLURM_ARRAY_JOB_ID")
            job = (
                f"{job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if job else os.environ["SLURM_JOB_ID"]
            )
            subprocess.run(["scontrol", "requeue", job], check=True, timeout=60)
            log.warning("requeued SLURM job %s", job)
        raise SystemExit(f"requeued at step {self._saved_step}")

    # --------------------------------------------------------------- end, crash
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step != self._saved_step:  # not already saved by a signal
            trainer.save_checkpoint(self.path, weights_only=False)  # full state: resumable

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        from catdiff.lightning.module import NonFiniteLossError

        if (
            isinstance(exception, NonFiniteLossError)
            or trainer.global_step == 0
            or trainer.global_step == self._saved_step
        ):
            return
        if trainer.world_size == 1:
            trainer.save_checkpoint(self.path, weights_only=False)  # full state: resumable
        else:
            # Only this rank may have failed: no barrier (Trainer.save_checkpoint has one).
            checkpoint = trainer._checkpoint_connector.dump_checkpoint(weights_only=False)
            trainer.strategy.save_checkpoint(checkpoint, self.path)
        log.warning(
            "run interrupted (%s): saved %s at step %d",
            type(exception).__name__,
            self.path,
            trainer.global_step,
        )
