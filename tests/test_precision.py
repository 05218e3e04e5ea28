"""trainer.precision=auto picks bf16 autocast only where the hardware runs it natively;
module.channels_last=auto turns channels_last on only for fp32 on CPU."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from catdiff.config import resolve_channels_last
from catdiff.errors import UserError
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


def test_channels_last_auto_is_on_only_for_fp32_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert precision.auto_channels_last("cpu", "32-true") is True
    assert precision.auto_channels_last("auto", "32-true") is True
    assert precision.auto_channels_last("cpu", "bf16-mixed") is False
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert precision.auto_channels_last("auto", "32-true") is False  # GPUs: not measured
    assert precision.auto_channels_last("cpu", "32-true") is True


@pytest.mark.parametrize(
    ("value", "precision_", "expected"),
    [("auto", "32-true", True), ("auto", "bf16-mixed", False), (False, "32-true", False)],
)
def test_resolve_channels_last_records_the_choice(
    monkeypatch: pytest.MonkeyPatch, value: object, precision_: str, expected: bool
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = OmegaConf.create(
        {
            "module": {"channels_last": value},
            "trainer": {"accelerator": "cpu", "precision": precision_},
        }
    )
    resolve_channels_last(cfg)
    assert cfg.module.channels_last is expected


def test_resolve_channels_last_names_the_key_of_a_bad_value() -> None:
    cfg = OmegaConf.create(
        {"module": {"channels_last": "sometimes"}, "trainer": {"precision": "32-true"}}
    )
    with pytest.raises(
        UserError, match=r"^module.channels_last=sometimes must be auto, true or false$"
    ):
        resolve_channels_last(cfg)
