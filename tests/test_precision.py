"""trainer.precision=auto picks bf16 autocast only where the hardware runs it natively;
module.channels_last=auto turns channels_last on only for fp32 on CPU; OMP_WAIT_POLICY is
PASSIVE only where processes share the cores."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from catdiff import precision
from catdiff.config import resolve_channels_last
from catdiff.errors import UserError


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


@pytest.mark.parametrize(
    ("trainer", "submitit", "expected"),
    [
        (
            {"devices": 1, "num_nodes": 1},
            False,
            None,
        ),  # alone: libgomp's default (spin, then sleep)
        ({"devices": 2, "num_nodes": 1}, False, "PASSIVE"),  # DDP ranks share the cores
        ({"devices": 1, "num_nodes": 2}, False, "PASSIVE"),
        ({"devices": "auto", "num_nodes": 1}, False, "PASSIVE"),
        ({"devices": 1, "num_nodes": 1}, True, "PASSIVE"),  # a member of a local sweep
    ],
)
def test_omp_wait_policy_is_passive_only_where_processes_share_the_cores(
    monkeypatch: pytest.MonkeyPatch, trainer: dict, submitit: bool, expected: str | None
) -> None:
    from catdiff.runtime import choose_omp_wait_policy

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    if submitit:
        monkeypatch.setenv("SUBMITIT_FOLDER", "/tmp/sweep")
    else:
        monkeypatch.delenv("SUBMITIT_FOLDER", raising=False)
    choose_omp_wait_policy(OmegaConf.create(trainer))
    assert os.environ.get("OMP_WAIT_POLICY") == expected


def test_omp_wait_policy_the_user_set_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    from catdiff.runtime import choose_omp_wait_policy

    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    choose_omp_wait_policy(OmegaConf.create({"devices": 2, "num_nodes": 1}))
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_importing_train_neither_loads_torch_nor_sets_the_policy() -> None:
    """The policy only works if it is set before torch loads OpenMP, in train()."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = "import os, sys, catdiff.train; print('torch' in sys.modules, 'OMP_WAIT_POLICY' in os.environ)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["False", "False"], out.stderr
