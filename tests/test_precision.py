"""trainer.precision=auto picks bf16 autocast only where the hardware runs it natively."""

from __future__ import annotations

import pytest
import torch

from catdiff.lightning import precision


def test_cpu_without_native_bf16_trains_in_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: False)
    assert precision.auto_precision("cpu") == "32-true"


def test_cpu_with_native_bf16_uses_bf16_mixed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: True)
    assert precision.auto_precision("cpu") == "bf16-mixed"


def test_gpu_without_bf16_support_stays_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert precision.auto_precision("gpu") == "32-true"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert precision.auto_precision("auto") == "bf16-mixed"
