"""Sampling and evaluation outputs: a bad ``out=`` is refused before any sampling, a rerun
into the same folder leaves no stale images, an edited or random checkpoint is one line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.conftest import one_error
from tests.test_cli import run, trained_run  # noqa: F401  (the module's trained run)


def test_a_rerun_with_fewer_images_leaves_only_its_own(trained_run: Path, tmp_path: Path) -> None:  # noqa: F811
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    out = tmp_path / "samples"
    common = [f"ckpt={ckpt}", "sampler=ddim", "steps=5", f"out={out}"]
    run(["catdiff.sample", *common, "n=6"])
    run(["catdiff.sample", *common, "n=3"])
    assert sorted(p.name for p in (out / "images").iterdir()) == [
        "0000.png",
        "0001.png",
        "0002.png",
    ]


@pytest.mark.parametrize("where", ["a_file", "read_only"])
def test_a_bad_out_is_refused_before_sampling(trained_run: Path, tmp_path: Path, where) -> None:  # noqa: F811
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    if where == "a_file":
        out = tmp_path / "taken"
        out.write_text("mine")
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        out = locked / "samples"
    for entry in ("catdiff.sample", "catdiff.evaluate"):
        proc = run(
            [entry, f"ckpt={ckpt}", "sampler=ddim", "steps=5", f"out={out}", "n=4"], check=False
        )
        message = one_error(proc)
        assert "out" in message and str(out) in message
        assert "samples (" not in proc.stdout  # nothing was sampled first


def test_a_read_only_out_is_refused_even_as_root(trained_run: Path, tmp_path: Path) -> None:  # noqa: F811
    """/proc is read-only for everyone: the probe write fails before any sampling."""
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    proc = run(["catdiff.sample", f"ckpt={ckpt}", "out=/proc/catdiff-samples", "n=2"], check=False)
    assert "out" in one_error(proc)


def test_an_edited_checkpoint_is_one_line(trained_run: Path, tmp_path: Path) -> None:  # noqa: F811
    ckpt = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    ckpt["catdiff"]["config"]["model"]["base_channels"] = 16  # no longer the weights' shape
    edited = tmp_path / "edited.ckpt"
    torch.save(ckpt, edited)
    message = one_error(run(["catdiff.sample", f"ckpt={edited}", "n=2"], check=False))
    assert "ckpt" in message and "do not match" in message
    (tmp_path / "six.ckpt").write_text("hello\n")  # a 6-byte text file
    message = one_error(run(["catdiff.sample", f"ckpt={tmp_path / 'six.ckpt'}"], check=False))
    assert "not a catdiff checkpoint" in message


def test_sampler_steps_beyond_the_checkpoints_T_are_one_line(trained_run: Path) -> None:  # noqa: F811
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    message = one_error(
        run(["catdiff.sample", f"ckpt={ckpt}", "sampler=ddim", "steps=500"], check=False)
    )
    assert "sampler.steps=500 is more than diffusion.T=50" in message
