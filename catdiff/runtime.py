"""The training process's environment, set before torch and Lightning load.

:func:`prepare_process` is the first thing ``catdiff.train`` does for a job: the OpenMP wait
policy, glibc's malloc thresholds, the Lightning warnings that do not apply here, and the log
files of DDP ranks under SLURM. No torch at import: the OpenMP policy only works if it is set
before torch loads OpenMP.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping
from typing import Any

from catdiff.allocator import describe as describe_allocator
from catdiff.allocator import keep_freed_memory

log = logging.getLogger("catdiff.train")

# Lightning warnings that do not apply here: whole-batch iterables know their length exactly
# (no workers), the EMA copy is in eval mode on purpose, a torch deprecation, and the hint to
# use srun on a machine that has SLURM installed but runs this job outside it.
IGNORED_WARNINGS = (
    r".*IterableDataset. has .__len__. defined",
    r".*module\(s\) in eval mode",
    r".*LeafSpec",
    r".*The .srun. command is available",
    r".*does not have many workers",
    r".*It is recommended to use .self.log\('val/",  # val sums are all-reduced before logging
)


def ignore_known_warnings() -> None:
    """Silence :data:`IGNORED_WARNINGS` (each filter once, however often it is called)."""
    for message in IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=message)


def choose_omp_wait_policy(trainer: Mapping[str, Any]) -> None:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` when this run shares the cores with other processes.

    Idle OpenMP threads spin for a while before they sleep (libgomp's default). Where other
    processes need the cores (DDP ranks, the members of a ``hydra/launcher=local`` sweep) the
    spinning threads take the cores from the processes doing work, so there they sleep at once.
    A run with the cores to itself is faster spinning (figures: the README's Speed section,
    "OpenMP threads that spin"). A value the user set is kept. It must be set before torch
    loads OpenMP; DDP ranks inherit it.
    """
    if "OMP_WAIT_POLICY" in os.environ:
        return
    alone = (
        trainer.get("devices", 1) == 1
        and trainer.get("num_nodes", 1) == 1
        and "SUBMITIT_FOLDER" not in os.environ  # a sweep member: others may run beside it
    )
    if not alone:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def file_logs_on_rank_zero_only() -> None:
    """Under SLURM every DDP rank is a task that runs this job, Hydra's log file included:
    ranks > 0 log to the console only, so train.log is rank 0's (the subprocess launcher in
    catdiff/lightning/ddp.py does the same for the ranks it starts)."""
    if int(os.environ.get("SLURM_PROCID", "0")) > 0:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
            root.removeHandler(handler)


def prepare_process(trainer: Mapping[str, Any]) -> None:
    """Everything above, in order, for a job that trains with ``trainer`` (the config node)."""
    choose_omp_wait_policy(trainer)
    keep_freed_memory()  # before the first activations are allocated
    ignore_known_warnings()
    file_logs_on_rank_zero_only()
    log.info("allocator: %s", describe_allocator())
