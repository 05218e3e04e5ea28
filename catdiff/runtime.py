"""The training process's environment (:func:`prepare_process`), set before torch and
Lightning load: the OpenMP policy only works if set before torch loads OpenMP.
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

# Lightning warnings that do not apply here (whole-batch iterables, the EMA in eval mode, ...).
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
    """``OMP_WAIT_POLICY=PASSIVE`` when this run shares the cores with other processes (DDP
    ranks, sweep members): idle OpenMP threads would spin on cores others need. A value the
    user set is kept."""
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
    """How many sweep members run at once (``hydra/launcher=parallel``), else None."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    launcher = HydraConfig.get().get("launcher") or {}
    if not str(launcher.get("_target_", "")).endswith("JoblibLauncher"):
        return None
    n_jobs = int(launcher.get("n_jobs", -1))
    return n_jobs if n_jobs > 0 else usable_cores()


def share_the_cores() -> None:
    """A member of a side-by-side sweep computes with its share of the cores."""
    members = side_by_side()
    if members is None:
        return
    import torch

    threads = max(1, usable_cores() // members)
    torch.set_num_threads(threads)
    log.info("sweep members side by side: %d at once, %d torch thread(s) each", members, threads)


def file_logs_on_rank_zero_only() -> None:
    """Under SLURM ranks > 0 log to the console only: train.log is rank 0's."""
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
