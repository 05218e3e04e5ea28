"""Config mistakes stop before any training with exactly one line on stderr that names the
key (exit code 2); ``HYDRA_FULL_ERROR=1`` gives the full trace instead."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.test_cli import FAST, run

MISTAKES = [
    # (what, overrides, text the line must hold)
    ("unknown key", ["foo=1"], "'foo'"),
    ("unknown nested key", ["data.batch_sise=8"], "'data.batch_sise'"),
    ("wrong type", ["trainer.max_steps=abc"], "trainer.max_steps=abc has the wrong type"),
    ("wrong type (number)", ["module.optimizer.lr=fast"], "module.optimizer.lr"),
    ("T <= 0", ["diffusion.T=0"], "diffusion.T"),
    ("image size the UNet cannot take", ["data.image_size=29"], "model.image_size"),
    ("unknown schedule", ["diffusion.schedule=zigzag"], "diffusion.schedule"),
    ("more CPU processes than cores", ["trainer.devices=4096"], "trainer.devices=4096"),
    ("DDP without a GPU count", ["trainer=ddp"], "trainer.devices"),
    ("no such experiment", ["experiment=nope"], "experiment=nope does not exist"),
    (
        "wrong type in a sweep",
        ["experiment=edge_trial", "trainer.max_steps=abc"],
        "trainer.max_steps",
    ),
]


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr[-3000:]
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize(
    ("overrides", "expected"), [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES]
)
def test_config_mistake_gives_one_line_naming_the_key(
    overrides: list[str], expected: str, tmp_path: Path
) -> None:
    where = [f"hydra.run.dir={tmp_path / 'run'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    proc = run(["catdiff.train", *FAST, *overrides, *where], check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert expected in _one_error_line(proc.stderr)
    assert not list(tmp_path.glob("**/checkpoints")), "training started"


def test_no_such_experiment_lists_the_experiments(tmp_path: Path) -> None:
    proc = run(["catdiff.train", "experiment=edge_trail"], check=False)
    line = _one_error_line(proc.stderr)
    for name in ("baseline", "edge_trial", "schedule_sweep", "loss_sweep", "objective_sweep"):
        assert name in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_a_gpu_that_is_not_there(tmp_path: Path) -> None:
    proc = run(
        ["catdiff.train", *FAST, "trainer=gpu", "trainer.devices=2", f"hydra.run.dir={tmp_path}"],
        check=False,
    )
    assert proc.returncode == 2
    line = _one_error_line(proc.stderr)
    assert "trainer.devices=2" in line and "0 GPU" in line


def test_hydra_full_error_shows_the_trace() -> None:
    proc = run(["catdiff.train", "foo=1"], env={"HYDRA_FULL_ERROR": "1"}, check=False)
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "foo" in proc.stderr
