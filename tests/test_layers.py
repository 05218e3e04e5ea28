"""The pure layers import neither Lightning nor Hydra, so a researcher can fork or reuse them
(a notebook, another trainer) without the framework."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize(
    "package", ["catdiff.diffusion", "catdiff.models", "catdiff.data", "catdiff.metrics"]
)
def test_pure_layer_imports_no_lightning_or_hydra(package: str) -> None:
    code = (
        f"import sys, {package}; "
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'lightning', 'pytorch_lightning', 'hydra'}); "
        "print(','.join(heavy))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "", f"{package} imports {proc.stdout.strip()}"
