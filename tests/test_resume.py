"""Resume: a run stopped by the preemption signal and resumed repeats the losses of a run
that never stopped, exactly (CPU, fixed seed); in its own folder (what a requeued SLURM job
does) and with ``ckpt_path=last`` into a new folder."""

from __future__ import annotations

import csv
import os
import signal
from pathlib import Path

import lightning as L
import pytest
import torch
from omegaconf import open_dict

from catdiff.train import train
from tests.conftest import compose


class SignalAt(L.Callback):
    """Sends this process SIGUSR2 (SLURM's preemption warning) after training step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGUSR2)


def config(run_dir: Path, *extra: str):
    overrides = [
        "debug=fast",
        "data=synthetic",
        "logger=csv",
        "trainer.max_steps=20",  # 228 training images / 16 = 14 steps per epoch: crosses one
        "trainer.log_every_n_steps=1",
        "trainer.val_check_interval=7",
        "+trainer.enable_progress_bar=false",
        "~callbacks.progress_bar",
        f"paths.run_dir={run_dir}",  # runs live in <output_root>/<name>/<run>
        f"paths.output_root={run_dir.parent.parent}",
        f"name={run_dir.parent.name}",
        *extra,
    ]
    cfg = compose(overrides)
    with open_dict(cfg):
        del cfg["hydra"]  # what a Hydra job sees: no hydra node
    return cfg


def losses(run_dir: Path) -> dict[int, tuple[str, str]]:
    """step -> (train/loss, val/loss) as written, from the run's metrics.csv."""
    out: dict[int, tuple[str, str]] = {}
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            train_loss, val_loss = out.get(int(row["step"]), ("", ""))
            out[int(row["step"])] = (
                row["train/loss"] or train_loss,
                row["val/loss"] or val_loss,
            )
    return out


def global_step(run_dir: Path) -> int:
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    return ckpt["global_step"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("resume") / "straight"
    train(config(run_dir))
    return run_dir


# The signal is seen at the end of the next step: a stop mid-epoch (6), and right after the
# epoch's last batch (14), where the data order must go on with the next epoch.
@pytest.mark.parametrize("signal_after", [5, 13])
def test_preempted_run_resumes_in_its_folder_with_the_same_losses(
    uninterrupted: Path, tmp_path: Path, signal_after: int
) -> None:
    run_dir = tmp_path / "preempted"
    cfg = config(
        run_dir,
        f"+callbacks.preempt._target_={SignalAt.__module__}.SignalAt",
        f"+callbacks.preempt.step={signal_after}",
    )
    train(cfg)  # outside SLURM the signal saves and stops the run
    assert global_step(run_dir) == signal_after + 1
    train(config(run_dir))  # no ckpt_path: the folder's last.ckpt is found, as after a requeue
    assert global_step(run_dir) == 20
    expected, got = losses(uninterrupted), losses(run_dir)
    assert [got[s][0] for s in range(20)] == [expected[s][0] for s in range(20)]
    assert {s: v for s, (_, v) in got.items() if v} == {s: v for s, (_, v) in expected.items() if v}


def test_ckpt_path_last_continues_into_a_new_folder(uninterrupted: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "resume" / "first", tmp_path / "resume" / "second"
    preempt = f"+callbacks.preempt._target_={SignalAt.__module__}.SignalAt"
    train(config(first, preempt, "+callbacks.preempt.step=9"))
    train(config(second, "ckpt_path=last"))  # the newest last.ckpt of runs named "resume"
    assert global_step(second) == 20
    expected, got = losses(uninterrupted), losses(second)
    resumed = sorted(s for s in got if got[s][0])
    assert resumed[0] >= 9 and resumed[-1] == 19
    assert [got[s][0] for s in resumed] == [expected[s][0] for s in resumed]


def test_a_requeued_job_resumes_from_its_own_last_checkpoint(tmp_path: Path) -> None:
    """No ckpt_path: a run folder that already holds checkpoints/last.ckpt (SLURM requeued the
    job) resumes from it; an explicit ckpt_path wins; a fresh folder starts from scratch."""
    from catdiff.resume import checkpoint_to_resume

    run_dir = tmp_path / "runs" / "name" / "run"
    assert checkpoint_to_resume(None, run_dir, str(tmp_path / "runs"), "name") is None
    (run_dir / "checkpoints").mkdir(parents=True)
    own = run_dir / "checkpoints" / "last.ckpt"
    torch.save({"global_step": 3}, own)
    assert checkpoint_to_resume(None, run_dir, str(tmp_path / "runs"), "name") == str(own)
    other = tmp_path / "other.ckpt"
    torch.save({"global_step": 5}, other)
    assert checkpoint_to_resume(str(other), run_dir, str(tmp_path / "runs"), "name") == str(other)


def test_the_resume_step_is_read_with_weights_only(tmp_path: Path) -> None:
    """The step is read without unpickling arbitrary objects: a file that holds one is refused
    with one line naming ckpt_path (torch.load(weights_only=False) would run its code)."""
    import argparse

    from catdiff.errors import UserError
    from catdiff.resume import checkpoint_step

    good, bad = tmp_path / "good.ckpt", tmp_path / "bad.ckpt"
    torch.save({"global_step": 7}, good)
    torch.save({"global_step": 7, "object": argparse.Namespace(x=1)}, bad)
    assert checkpoint_step(str(good)) == 7
    assert torch.load(bad, weights_only=False)["global_step"] == 7
    with pytest.raises(UserError, match=r"^ckpt_path=.*bad.ckpt is not a catdiff checkpoint"):
        checkpoint_step(str(bad))
