"""The run's loggers, and a CSV logger whose history survives a resume in the same folder.

Lightning's ``CSVLogger`` deletes an existing ``metrics.csv`` when it starts; :class:`CSVLogger`
keeps the rows up to the step of the checkpoint the run resumes from.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from catdiff.config import build, run_identity, to_plain
from catdiff.files import write_text


def build_loggers(cfg: DictConfig) -> list[Any]:
    """The loggers of ``cfg.logger``; a W&B logger gets the run's identity where unset."""
    loggers = []
    for key, node in (cfg.get("logger") or {}).items():
        if node is None:
            continue
        extra: dict[str, Any] = {}
        if str(node.get("_target_", "")).endswith("WandbLogger"):
            os.environ.setdefault("WANDB_SILENT", "true")  # no banner on stderr
            identity = run_identity(cfg)
            extra = {k: v for k, v in identity.items() if node.get(k) is None}
        loggers.append(build(node, f"logger.{key}", **extra))
    return loggers


def save_run_config(cfg: DictConfig, run_dir: Path, trainer: Any, loggers: list[Any]) -> None:
    """``config.yaml`` in the run folder, and the config as every logger's hyperparameters."""
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    hparams = {
        **to_plain(cfg),
        "world_size": trainer.world_size,
        "global_batch_size": cfg.data.batch_size * trainer.world_size,
    }
    for logger in loggers:
        logger.log_hyperparams(hparams)


def run_summary(trainer: Any, metrics: dict[str, float], seconds: float) -> dict[str, Any]:
    """The final numbers of the run: last metrics, best validation loss, steps, images, time."""
    summary: dict[str, Any] = {f"final/{k}": v for k, v in metrics.items()}
    best = getattr(trainer.checkpoint_callback, "best_model_score", None)
    if best is not None:
        summary["best/val_loss"] = float(best)
    summary["global_step"] = int(trainer.global_step)
    summary["world_size"] = int(trainer.world_size)
    summary["wall_time_s"] = round(seconds, 1)
    return summary


def write_summary(
    trainer: Any, loggers: list[Any], run_dir: Path, metrics: dict[str, float], seconds: float
) -> None:
    """:func:`run_summary` to ``metrics.json`` in the run folder and to the W&B run's summary."""
    summary = run_summary(trainer, metrics, seconds)
    write_text(run_dir / "metrics.json", json.dumps(summary, indent=1) + "\n")
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger":
            logger.experiment.summary.update(summary)


def finish_wandb(loggers: list[Any], failed: bool) -> None:
    """End the W&B run, or it would swallow the next local sweep member's metrics."""
    if not any(type(lg).__name__ == "WandbLogger" for lg in loggers):
        return
    import wandb

    if wandb.run is not None:
        wandb.finish(exit_code=1 if failed else 0)


class _AppendingWriter(ExperimentWriter):
    def __init__(self, log_dir: str, resume_step: int | None) -> None:
        self._resume_step = resume_step
        super().__init__(log_dir=log_dir)

    def _check_log_dir_exists(self) -> None:  # called by __init__: keep, do not delete
        if not self._fs.isfile(self.metrics_file_path):
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            reader = csv.DictReader(file)
            keys, rows = list(reader.fieldnames or []), list(reader)
        if self._resume_step is not None:  # Lightning logs the metrics of step g as step g-1
            rows = [r for r in rows if r.get("step", "") and int(r["step"]) < self._resume_step]
        with self._fs.open(self.metrics_file_path, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
        self.metrics_keys = keys


class CSVLogger(LightningCSVLogger):
    """Lightning's CSVLogger appending to ``metrics.csv`` from :attr:`resume_step` on."""

    resume_step: int | None = None

    @property
    def experiment(self) -> Any:
        if self._experiment is None:
            if rank_zero_only.rank > 0:
                return super().experiment  # Lightning's no-op stand-in
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(self.log_dir, self.resume_step)
        return self._experiment
