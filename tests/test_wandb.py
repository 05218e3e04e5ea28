"""W&B, offline and for real: a two-member sweep with ``logger=[wandb,csv,tensorboard]`` leaves,
in each member's run folder, an offline W&B run that holds the resolved config, the metric
history on the trainer/global_step axis, the final metrics in the summary, and the sample
grids as uint8 PNGs; both members share one group and are named by their swept value."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from catdiff.report.runs import wandb_records  # the reader catdiff.report uses
from tests.conftest import ROOT


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wandb")
    # No WANDB_MODE, no API key: offline must be the default.
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "catdiff.train",
            "experiment=loss_sweep",  # sweeps by itself (hydra.mode: MULTIRUN in the file)
            "debug=fast",  # one seed: two members
            "data=synthetic",
            "diffusion.loss=l1,l2",
            "logger=[wandb,csv,tensorboard]",
            "callbacks.sample_grid.every_n_steps=10",
            f"hydra.sweep.dir={root / 'multirun_2030-01-01_00-00-00'}",
        ],
        cwd=ROOT,
        env={**env, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "wandb: Tracking run" not in proc.stderr  # quiet
    return root / "multirun_2030-01-01_00-00-00"


def _member(sweep: Path, loss: str) -> dict:
    (run_dir,) = [p for p in sweep.iterdir() if f"diffusion.loss={loss}" in p.name]
    (offline,) = list((run_dir / "wandb").glob("offline-run-*"))
    records = list(wandb_records(next(offline.glob("run-*.wandb"))))
    kinds = {}
    for r in records:
        kinds.setdefault(r.WhichOneof("record_type"), []).append(r)
    return {"dir": run_dir, "offline": offline, "records": kinds}


@pytest.mark.parametrize("loss", ["l1", "l2"])
def test_offline_run_holds_config_history_summary_and_images(sweep: Path, loss: str) -> None:
    member = _member(sweep, loss)
    records = member["records"]

    (run_record,) = records["run"]
    assert run_record.run.project == "catdiff"
    assert run_record.run.run_group == "loss_sweep-2030-01-01_00-00-00"  # name + sweep id
    assert run_record.run.display_name == f"loss={loss}"  # the swept value
    assert {"loss_sweep", loss} <= set(run_record.run.tags)

    config = {u.key: json.loads(u.value_json) for r in records["config"] for u in r.config.update}
    assert config["diffusion"]["loss"] == loss and config["name"] == "loss_sweep"
    assert config["global_batch_size"] == 16 and config["world_size"] == 1

    history = [
        {_key(i): json.loads(i.value_json) for i in r.history.item} for r in records["history"]
    ]
    keys = set().union(*history)
    for metric in ("train/loss", "val/loss", "val/loss_t0", "val/loss_t9", "lr-AdamW"):
        assert metric in keys, metric
    assert "train/img_per_s" in keys and "samples" in {k.split("/")[0] for k in keys}
    # Every row carries the step, and every metric is plotted against it: members align.
    assert all("trainer/global_step" in row for row in history)
    steps = {(m.metric.glob_name, m.metric.step_metric) for m in records["metric"]}
    assert ("*", "trainer/global_step") in steps
    val_steps = [row["trainer/global_step"] for row in history if "val/loss" in row]
    assert val_steps == [9, 19]

    summary = {}
    for r in records["summary"]:
        summary.update({_key(u): json.loads(u.value_json) for u in r.summary.update})
    assert summary["global_step"] == 20 and "final/val/loss" in summary
    assert summary["best/val_loss"] <= summary["final/val/loss"] + 1e-9

    images = sorted((member["offline"] / "files" / "media" / "images").glob("samples_*.png"))
    assert len(images) >= 2
    pixels = np.asarray(Image.open(images[-1]))
    assert pixels.dtype == np.uint8 and pixels.std() > 10, "grid is blank"

    assert (member["dir"] / "csv" / "metrics.csv").is_file()  # logger=[wandb,csv,...]
    assert list((member["dir"] / "tensorboard").glob("events.out.tfevents.*"))


def test_both_members_share_the_group_and_differ_by_name(sweep: Path) -> None:
    runs = [_member(sweep, loss)["records"]["run"][0].run for loss in ("l1", "l2")]
    assert runs[0].run_group == runs[1].run_group
    assert runs[0].run_id != runs[1].run_id and runs[0].display_name != runs[1].display_name
