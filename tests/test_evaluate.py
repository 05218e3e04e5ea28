"""python -m catdiff.evaluate end to end on a tiny trained run, its comparable spaces, its
one-line errors, and the periodic evaluation callback during training."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from catdiff.data.edges import apply_edges
from catdiff.metrics.spaces import spaces_of
from tests.test_cli import FAST, run

# Tiny but complete: 40 samples, DDIM 5, extractor trained for a few steps, NLL from 4 t/image.
EVAL = [
    "n=40",
    "sampler=ddim",
    "steps=5",
    "batch_size=20",
    "metrics.extractor_steps=15",
    "metrics.fid_kid.kid_subsets=10",
    "nll.timesteps=4",
    "nll.images=16",
]


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("evalrun") / "run"
    run(["catdiff.train", *FAST, f"hydra.run.dir={run_dir}"])
    return run_dir / "checkpoints" / "last.ckpt"


def test_evaluate_writes_metrics_grid_and_samples(tiny_ckpt: Path, tmp_path: Path) -> None:
    cache = tmp_path / "extractors"
    out = tmp_path / "eval"
    proc = run(
        [
            "catdiff.evaluate",
            f"ckpt={tiny_ckpt}",
            *EVAL,
            f"out={out}",
            f"metrics.extractor_cache={cache}",
        ]
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 40 and metrics["sampler"] == "ddim" and metrics["nfe"] == 5
    assert metrics["global_step"] == 20
    # A plain (data.edges=none) model is scored in both comparable spaces.
    assert set(metrics["fid"]) == {"gray", "edges"}
    for space in ("gray", "edges"):
        assert math.isfinite(metrics["fid"][space]) and metrics["fid"][space] > 0
        assert metrics["kid"][space]["std"] >= 0
        assert len(metrics["extractor"][space]["sha256"]) == 64
    assert metrics["extractor"]["gray"]["sha256"] != metrics["extractor"]["edges"]["sha256"]
    assert math.isfinite(metrics["nll"]["bpd"]) and metrics["nll"]["se"] > 0
    assert metrics["nll"]["n_images"] == 16
    assert metrics["wall_time_s"]["total"] > 0 and metrics["machine"]
    samples = torch.load(out / "samples.pt", weights_only=True)
    assert samples.shape == (40, 1, 28, 28) and samples.dtype == torch.uint8
    assert (out / "grid.png").is_file() and (out / "zoom.png").is_file()
    assert "FID[gray]" in proc.stdout
    # the detail ratio is taken in each space too, and printed
    assert set(metrics["detail"]) == {"gray", "edges"}
    assert all(math.isfinite(v) and v > 0 for v in metrics["detail"].values())
    assert f"detail[gray] {metrics['detail']['gray']:.2f}" in proc.stdout
    # conf/evaluate.yaml's other metric, in the generic form: precision and recall per space
    precision = metrics["scores"]["precision"]
    assert set(precision["value"]) == set(metrics["scores"]["recall"]["value"]) == {"gray", "edges"}
    assert precision["settings"] == {"k": 3, "n": 40} and precision["lower_is_better"] is False
    assert all(0 <= v <= 1 for v in precision["value"].values())
    assert f"precision[gray] {precision['value']['gray']:.3f}" in proc.stdout

    # Same options again: the cached extractors are reused and the numbers repeat exactly.
    again = tmp_path / "again"
    run(
        [
            "catdiff.evaluate",
            f"ckpt={tiny_ckpt}",
            *EVAL,
            f"out={again}",
            f"metrics.extractor_cache={cache}",
        ]
    )
    second = json.loads((again / "metrics.json").read_text())
    assert second["fid"] == metrics["fid"] and second["nll"]["bpd"] == metrics["nll"]["bpd"]
    assert second["kid"] == metrics["kid"] and second["scores"] == metrics["scores"]
    assert second["extractor"] == metrics["extractor"]
    assert len(list(cache.glob("*.pt"))) == 2  # one extractor per space, trained once


def test_evaluate_takes_any_sampler_of_the_group_and_names_its_folder(tiny_ckpt: Path) -> None:
    """EDM's Heun (its module + its yaml, nothing else) through the evaluate command line; the
    default folder is <sampler><network evaluations>_n<n>."""
    options = ["n=8", "batch_size=8", "metrics.fid=false", "nll.mode=none"]
    run(["catdiff.evaluate", f"ckpt={tiny_ckpt}", *options, "sampler=heun", "sampler.steps=3"])
    folder = tiny_ckpt.parents[1] / "eval" / "heun5_n8"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert (metrics["sampler"], metrics["steps"], metrics["nfe"]) == ("heun", 3, 5)
    assert metrics["options"]["sampler"]["steps"] == 3
    run(["catdiff.evaluate", f"ckpt={tiny_ckpt}", *options, "sampler=dpm_solver", "steps=4"])
    assert (tiny_ckpt.parents[1] / "eval" / "dpm_solver4-logsnr_n8" / "metrics.json").is_file()


@pytest.mark.parametrize(
    ("option", "named"),
    [
        ("metrics.extractor=resnet", "metrics.extractor"),
        ("nll.mode=exact", "nll.mode"),
        ("metrics.fidd=true", "metrics.fidd"),
        ("metrics.precision_recall.k=0", "metrics.precision_recall.k"),
        ("metrics.fid_kid._target_=catdiff.nope.FID", "metrics.fid_kid._target_"),
        ("n=many", "n="),
        ("sampler=nope", "sampler=nope does not exist; sampler is one of"),
    ],
)
def test_evaluate_bad_option_is_one_line_naming_it(
    tiny_ckpt: Path, tmp_path: Path, option: str, named: str
) -> None:
    proc = run(
        [
            "catdiff.evaluate",
            f"ckpt={tiny_ckpt}",
            *EVAL,
            option,
            f"out={tmp_path}",
            "nll.mode=none" if "nll" not in option else "n=40",
        ],
        check=False,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], proc.stderr


def test_spaces_compare_like_with_like() -> None:
    gray = torch.randint(0, 256, (5, 1, 12, 12), dtype=torch.uint8)
    plain = spaces_of(gray, "none")
    assert set(plain) == {"gray", "edges"}
    assert torch.equal(plain["gray"], gray)
    assert torch.equal(plain["edges"], apply_edges(gray, "sobel"))
    both = apply_edges(gray, "sobel+gray")
    split = spaces_of(both, "sobel+gray")
    # The edge channel of a sobel+gray image is exactly the Sobel of its gray channel, so a
    # plain model's Sobel-ed samples and an edge model's samples live in one space.
    assert torch.equal(split["gray"], gray) and torch.equal(split["edges"], plain["edges"])
    assert set(spaces_of(apply_edges(gray, "sobel"), "sobel")) == {"edges"}


def test_periodic_evaluation_logs_fid_during_training(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run(
        [
            "catdiff.train",
            *FAST,
            f"hydra.run.dir={run_dir}",
            "callbacks.evaluate.every_n_steps=10",
            "callbacks.evaluate.n=20",
            "callbacks.evaluate.sampler.steps=3",
            "callbacks.evaluate.extractor_steps=10",
            "callbacks.evaluate.nll_images=8",
            "callbacks.evaluate.nll_timesteps=2",
            f"callbacks.evaluate.extractor_cache={tmp_path / 'extractors'}",
        ]
    )
    header, *rows = (run_dir / "csv" / "metrics.csv").read_text().splitlines()
    columns = header.split(",")
    for name in ("eval/fid_gray", "eval/kid_gray", "eval/fid_edges", "eval/nll_bpd"):
        assert name in columns, columns
    fid_at = [
        r.split(",")[columns.index("step")]
        for r in rows
        if r.split(",")[columns.index("eval/fid_gray")]
    ]
    assert len(fid_at) == 2, fid_at  # steps 10 and 20


def test_eval_folder_names_the_spacing_unless_trailing() -> None:
    from omegaconf import OmegaConf

    from catdiff.config import conf_dir
    from catdiff.evaluate import tag

    cfg = OmegaConf.load(conf_dir() / "evaluate.yaml")
    cfg.n = 1000
    assert tag(cfg, "dpm_solver", 20, "logsnr") == "dpm_solver20-logsnr_n1000"
    assert tag(cfg, "ddim", 50, "trailing") == "ddim50_n1000"  # the name results had before logsnr
    assert tag(cfg, "heun", 35) == "heun35_n1000"
