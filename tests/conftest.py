"""Shared fixtures: the real config composed once with Hydra's compose API, then shrunk."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SHARED_DATA = ROOT.parent / "shared" / "data"

# Tests share two cores with each other's subprocesses: no OpenMP spin-waiting, one thread.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Runs started by tests (and their subprocesses) write downloads, caches and run folders to a
# temporary place, never into the checkout.
_scratch = Path(tempfile.mkdtemp(prefix="catdiff-tests-"))
atexit.register(shutil.rmtree, _scratch, ignore_errors=True)
os.environ.setdefault("CATDIFF_DATA_DIR", str(_scratch / "data"))
os.environ.setdefault("CATDIFF_OUTPUTS", str(_scratch / "outputs"))
torch.set_num_threads(1)


def compose(overrides: list[str] | None = None, config_name: str = "train"):
    """The config a user gets from ``python -m catdiff.train <overrides>`` (with hydra keys)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import catdiff.config  # noqa: F401  (registers resolvers)

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(
            config_name=config_name, overrides=overrides or [], return_hydra_config=True
        )


def one_error(proc) -> str:
    """The one ``error:`` line of a command that refused its input: exit code 2, no traceback."""
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return errors[0]


@pytest.fixture
def catfaces_root() -> Path:
    root = SHARED_DATA / "catfaces64"
    if not root.is_dir():
        pytest.skip("../shared/data/catfaces64 is not present on this machine")
    return root


# Property-based tests explore new examples on every local run; CI replays a fixed sequence
# (derandomize), so a red CI means a change broke something, not that the dice rolled anew.
try:
    from hypothesis import settings as _hypothesis_settings

    _hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
    if os.environ.get("CI"):
        _hypothesis_settings.load_profile("ci")
except ImportError:  # pragma: no cover - hypothesis is a dev extra
    pass
