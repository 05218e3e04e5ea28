"""What catdiff was measured and compared with: code beside the reports it wrote.

Not part of the installed package (``pip install .`` ships ``catdiff`` only): run from the
checkout's root, e.g. ``python -m experiments.bench`` (``make bench``) or
``python -m experiments.vs_diffusers`` (``make vs-peer``). This code imports catdiff; catdiff
never imports it.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the checkout


def child_env(**overrides: str) -> dict[str, str]:
    """This process's environment with ``overrides`` and the checkout first on PYTHONPATH, so a
    ``python -m experiments...`` child finds this package from any working directory."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, **overrides, "PYTHONPATH": path}
