"""hydra/launcher=parallel: sweep members side by side, each with its share of the cores, and a
rerun into the same sweep folder retrains only the members that had not finished."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.test_cli import run

SWEEP = ["experiment=edge_trial", "debug=fast", "data=synthetic", "logger=none"]


def test_members_run_side_by_side_and_a_rerun_skips_finished_ones(tmp_path: Path) -> None:
    env = {"CATDIFF_OUTPUTS": str(tmp_path / "out")}
    run(["catdiff.train", *SWEEP, "hydra/launcher=parallel"], env=env)
    (sweep,) = (tmp_path / "out" / "edge_trial").glob("multirun_*")
    members = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(members) == 3  # none / sobel / sobel+gray
    for member in members:
        log = (member / "train.log").read_text()
        assert "sweep members side by side: 2 at once, 1 torch thread(s) each" in log
    done = members[0] / "checkpoints" / "last.ckpt"
    stamp = done.stat().st_mtime_ns
    for name in ("last.ckpt", "best-step0000020.ckpt"):  # interrupt the last member
        (members[2] / "checkpoints" / name).unlink(missing_ok=True)
    run(["catdiff.train", *SWEEP, "hydra/launcher=parallel", f"hydra.sweep.dir={sweep}"], env=env)
    assert done.stat().st_mtime_ns == stamp  # finished: not trained again
    for member in members:
        state = torch.load(member / "checkpoints" / "last.ckpt", weights_only=True)
        assert state["global_step"] == 20
