"""A CSV logger whose history survives a resume in the same run folder.

Lightning's ``CSVLogger`` deletes an existing ``metrics.csv`` when it starts. A job that SLURM
requeued resumes in its own run folder, so that would drop the metrics of the first attempt.
:class:`CSVLogger` keeps them: rows up to the step of the checkpoint the run resumes from stay,
later rows (logged after that checkpoint, about to be logged again) go, and new rows follow.
"""

from __future__ import annotations

import csv
from typing import Any

from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities import rank_zero_only


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
    """``lightning.pytorch.loggers.CSVLogger`` that appends to an existing ``metrics.csv``.

    Set :attr:`resume_step` (the checkpoint's global step) before training starts when the
    run resumes; train.py does.
    """

    resume_step: int | None = None

    @property
    def experiment(self) -> Any:
        if self._experiment is None:
            if rank_zero_only.rank > 0:
                return super().experiment  # Lightning's no-op stand-in
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(self.log_dir, self.resume_step)
        return self._experiment
