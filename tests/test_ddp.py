"""DDP for real: 2 CPU processes with gloo (``trainer=ddp_cpu``), started the way users start it,
inside a sweep from an experiment file (hydra.mode: MULTIRUN) -- the case where Lightning's
own re-launch of rank 1 under Hydra would start a second sweep and write other folders.

One run folder, one checkpoint, one copy of each metric row and sample grid; the EMA weights
are identical on both ranks (checked bitwise by the module at the end of training)."""

from __future__ import annotations

import csv
import json
import time
from collections import Counter
from pathlib import Path

import pytest
import torch

from tests.test_cli import FAST, run


@pytest.fixture(scope="module")
def ddp_sweep(tmp_path_factory) -> tuple[Path, Path, float]:
    outputs = tmp_path_factory.mktemp("ddp")
    sweep = outputs / "edge_trial" / "sweep"
    started = time.perf_counter()
    proc = run(
        [
            "catdiff.train",
            "experiment=edge_trial",
            "data.edges=sobel+gray",  # one member; a path with '=', ',' and '+' for rank 1
            *FAST,
            "trainer=ddp_cpu",
            "callbacks.sample_grid.every_n_steps=10",
            f"hydra.sweep.dir={sweep}",
        ],
        env={"CATDIFF_OUTPUTS": str(outputs)},  # 1 thread per process: 2 processes, 2 cores
    )
    elapsed = time.perf_counter() - started
    print(f"\n2-process DDP sweep member: {elapsed:.0f} s wall")
    (tmp_path_factory.getbasetemp() / "ddp.log").write_text(proc.stdout + proc.stderr)
    return outputs, sweep, elapsed


def test_one_run_folder_one_checkpoint_no_rank_folders(ddp_sweep) -> None:
    outputs, sweep, _ = ddp_sweep
    members = [p for p in sweep.iterdir() if p.is_dir()]
    assert len(members) == 1, members
    (member,) = members
    # Nothing else anywhere: no folder of rank 1 under outputs/, no second sweep.
    assert {p for p in outputs.rglob("*") if p.is_dir() and "checkpoints" in p.name} == {
        member / "checkpoints"
    }
    assert {p.name for p in sweep.iterdir()} == {member.name, "multirun.yaml"}
    assert sorted(p.name for p in member.glob("*.log")) == ["train.log"]  # rank 0's only
    ckpt = torch.load(member / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 20
    assert ckpt["catdiff"]["config"]["trainer"]["devices"] == 2
    assert ckpt["catdiff"]["config"]["data"]["edges"] == "sobel+gray"


def test_ema_identical_on_both_ranks_and_outputs_written_once(ddp_sweep) -> None:
    _, sweep, _ = ddp_sweep
    (member,) = [p for p in sweep.iterdir() if p.is_dir()]
    log = (member / "train.log").read_text()
    assert "EMA weights identical on all 2 ranks" in log
    grids = [line for line in log.splitlines() if "sample grid at step" in line]
    assert len(grids) == 2 and len(set(grids)) == 2  # steps 10 and 20, once each
    assert sorted(p.name for p in (member / "samples").iterdir()) == [
        "step_0000010.png",
        "step_0000020.png",
    ]
    with open(member / "csv" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    train_steps = Counter(r["step"] for r in rows if r["train/loss"])
    val_steps = Counter(r["step"] for r in rows if r["val/loss"])
    assert train_steps and max(train_steps.values()) == 1, "a metric row written twice"
    assert sorted(val_steps) == ["19", "9"] and max(val_steps.values()) == 1


def test_global_batch_is_per_device_batch_times_processes(ddp_sweep) -> None:
    _, sweep, _ = ddp_sweep
    (member,) = [p for p in sweep.iterdir() if p.is_dir()]
    assert json.loads((member / "metrics.json").read_text())["world_size"] == 2
    hparams = (member / "csv" / "hparams.yaml").read_text()
    assert "global_batch_size: 32" in hparams  # data.batch_size 16 x 2 processes
