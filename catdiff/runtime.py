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
from catdiff.machine import usable_cores

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
        and side_by_side() is None
    )
    if not alone:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def side_by_side() -> int | None:
    """How many sweep members this machine runs at once (``hydra/launcher=parallel``: joblib's
    ``n_jobs``, -1 meaning one per core), or None for a job that has the machine to itself."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    launcher = HydraConfig.get().get("launcher") or {}
    if not str(launcher.get("_target_", "")).endswith("JoblibLauncher"):
        return None
    n_jobs = int(launcher.get("n_jobs", -1))
    return n_jobs if n_jobs > 0 else usable_cores()


def share_the_cores() -> None:
    """A member of a side-by-side sweep computes with its share of the cores: with two members
    on two cores, one thread each, so neither waits for the other at every parallel region."""
    members = side_by_side()
    if members is None:
        return
    import torch

    threads = max(1, usable_cores() // members)
    torch.set_num_threads(threads)
    log.info("sweep members side by side: %d at once, %d torch thread(s) each", members, threads)


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
    share_the_cores()
    log.info("allocator: %s", describe_allocator())
