"""Which machine a result came from: one line for ``metrics.json`` and the bench's header."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The ``model name`` line of /proc/cpuinfo (Linux), else what platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, as SLURM and taskset set it), not
    the machine's total: what bounds its speed. No torch import (catdiff.runtime calls it
    before torch may load)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def machine() -> str:
    """``<cpu model> (<usable cores> cores)[, <gpu>], torch <version>``."""
    import torch

    cpus = usable_cores()
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{cpu_model()} ({cpus} cores){gpu}, torch {torch.__version__}"
