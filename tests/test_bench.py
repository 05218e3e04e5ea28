"""The benchmark harness: its timing helper, ratios, and the report of a --tiny run.

No real benchmark runs here: ``--tiny`` times toy models on toy sizes, only to check that
every measurement runs and lands in the JSON and markdown with the right structure.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from catdiff import allocator
from catdiff.models import UNet, count_parameters
from experiments.bench import suite, train_speed
from experiments.bench.timing import (
    Timing,
    measure,
    measure_interleaved,
    rate_figure,
    ratio,
    seconds_figure,
)

CONF = Path(__file__).resolve().parents[1] / "conf"


def test_measure_runs_warmup_then_timed_reps() -> None:
    calls = []
    timing = measure(lambda: calls.append(1), reps=5, warmup=2)
    assert len(calls) == 7
    assert (timing.reps, timing.warmup) == (5, 2)
    assert 0 <= timing.min <= timing.median <= timing.max


def test_measure_interleaved_alternates_the_functions() -> None:
    calls = []
    timings = measure_interleaved([lambda: calls.append("a"), lambda: calls.append("b")], 3, 1)
    assert calls == ["a", "b"] + ["a", "b"] * 3
    assert [t.reps for t in timings] == [3, 3]


def test_measure_rejects_no_reps() -> None:
    with pytest.raises(ValueError):
        measure(lambda: None, reps=0, warmup=1)


def test_rate_and_ratio_directions() -> None:
    fast, slow = Timing(0.5, 0.4, 1.0, 5, 1), Timing(1.0, 0.8, 2.0, 5, 1)
    ours = rate_figure("a", "train", "a", fast, items=10, how="", flop_per_item=1e9)
    theirs = rate_figure("b", "train", "b", slow, items=10, how="")
    assert (ours.median, ours.min, ours.max) == (20, 10, 25)  # min rate from the slowest rep
    assert ours.gflop_s == pytest.approx(20)
    r = ratio("r", "r", ours, theirs)
    assert r.ratio == pytest.approx(2.0) and r.better == "higher"
    t = ratio(
        "s",
        "s",
        seconds_figure("c", "sample", "c", fast, ""),
        seconds_figure("d", "sample", "d", slow, ""),
    )
    assert t.ratio == pytest.approx(0.5) and t.better == "lower"


def test_bench_mirrors_the_default_config() -> None:
    module = OmegaConf.load(CONF / "module" / "default.yaml")
    trainer = OmegaConf.load(CONF / "trainer" / "default.yaml")
    optimizer = OmegaConf.to_container(module.optimizer)
    assert optimizer["_target_"] == "torch.optim.AdamW"
    assert optimizer["lr"] == train_speed.ADAMW_KWARGS["lr"]
    assert optimizer["weight_decay"] == train_speed.ADAMW_KWARGS["weight_decay"]
    assert tuple(optimizer["betas"]) == train_speed.ADAMW_KWARGS["betas"]
    assert module.ema_decay == train_speed.EMA_DECAY
    assert trainer.gradient_clip_val == train_speed.GRAD_CLIP
    tiny = OmegaConf.to_container(OmegaConf.load(CONF / "model" / "unet_tiny.yaml"))
    for key, value in suite.TINY_UNET.items():
        assert tiny[key] == (list(value) if isinstance(value, tuple) else value), key


def test_matched_catdiff_keeps_a_matching_model_and_resizes_another() -> None:
    target = count_parameters(UNet(**suite.TINY_UNET))
    kwargs, note = suite.matched_catdiff(suite.TINY_UNET, target)
    assert kwargs == suite.TINY_UNET and "same model size" in note
    wide = {**suite.TINY_UNET, "base_channels": 16}
    kwargs, note = suite.matched_catdiff(wide, target)
    assert abs(count_parameters(UNet(**kwargs)) / target - 1) <= suite.PARAM_TOLERANCE
    assert "base_channels=" in note


def test_tiny_run_writes_json_and_markdown(tmp_path: Path) -> None:
    out = tmp_path / "bench" / "tiny.json"
    # A missing data folder: the decode benchmark falls back to synthetic files.
    suite.main(["--tiny", "--out", str(out), "--data", str(tmp_path / "no-such-folder")])

    report = json.loads(out.read_text())
    assert report["mode"] == "tiny"
    for key in ("cpu", "logical_cpus", "torch", "threads", "date", "load_average_start"):
        assert key in report["machine"]
    assert report["machine"]["allocator"] == allocator.describe()
    figures = report["figures"]
    expected = [
        "peak/matmul/fp32",
        "peak/conv3x3/bf16",
        "flops/default/forward",
        "flops/diffusers/train_step",
        "train/default/fp32/adamw",
        "train/diffusers/bf16/adamw",
        "train/diffusers/fp32/adamw@own-process",
        "train/diffusers/bf16/adamw@own-process",
        "train/default/bf16/adamw@own-process",
        *(case.id for case in suite.TRAIN_VARIANTS),
        "train/default/fp32/adamw@beside-variants",
        "train/default/bf16/adamw@beside-variants",
        "sample/default/ddim50/bf16",
        "sample/diffusers/ddim50/fp32",
        "sample/diffusers/ddim50/bf16@own-process",
        "sample/default/ddim50/fp32@own-process",
        *(case.id for case in suite.SAMPLE_VARIANTS),
        "data/cold",
        "data/warm",
        "lightning/trainer",
        "lightning/plain",
        "profile/train/convolutions",
        "profile/sample/convolutions",
        "profile/train/outside",
    ]
    assert set(expected) <= set(figures), set(expected) - set(figures)
    for fig in figures.values():
        assert 0 < fig["min"] <= fig["median"] <= fig["max"], fig["id"]
        assert fig["how"]
    train = figures["train/default/fp32/adamw"]
    assert train["unit"] == "img/s" and train["gflop_s"] > 0
    assert {"util_matmul", "util_conv", "params", "batch"} <= set(train["extra"])
    assert "extrapolated" in figures["sample/default/ddpm1000/fp32"]["label"]
    # a variant is compared with the plain step timed in its own group, not across groups
    fused = figures["train/default/bf16/adamw-fused"]
    plain = figures["train/default/bf16/adamw@beside-variants"]
    assert fused["extra"]["vs_plain"] == pytest.approx(fused["median"] / plain["median"], rel=1e-2)
    assert "timed beside it" in fused["label"]
    # the headline steps use training's default layout (module.channels_last=auto): channels_last
    # in fp32 only; the other layout is a variant timed beside the default step
    assert figures["train/default/fp32/adamw"]["label"].endswith(", channels_last")
    assert "channels_last" not in figures["train/default/bf16/adamw"]["label"]
    assert "vs_plain" in figures["train/default/fp32/adamw/contiguous"]["extra"]
    assert "channels_last" in figures["train/default/bf16/adamw/channels-last"]["label"]
    assert figures["data/cold"]["extra"]["x_train"] > 0
    assert "overhead_ms" in figures["lightning/trainer"]["extra"]

    # each comparison twice: each tool in its own process (as its users run it: catdiff with
    # its allocator settings, diffusers with glibc's defaults), and both in the bench's process
    ratios = report["ratios"]
    headline = {"train_fp32", "train_bf16", "sample_ddim50_fp32", "sample_ddim50_bf16"}
    assert set(ratios) == headline | {f"{id}_same_process" for id in headline}
    for id, r in ratios.items():
        ours, theirs = figures[r["catdiff_figure"]], figures[r["diffusers_figure"]]
        assert r["ratio"] == pytest.approx(ours["median"] / theirs["median"])
        assert "diffusers" in r["diffusers_figure"]
        own = id in headline
        assert r["diffusers_figure"].endswith("@own-process") == own
        assert r["catdiff_figure"].endswith("@own-process") == own
    assert "own process" in figures["train/diffusers/fp32/adamw@own-process"]["label"]
    assert "default allocator" in figures["train/diffusers/fp32/adamw@own-process"]["how"]
    assert "catdiff's allocator" in figures["train/default/fp32/adamw@own-process"]["how"]

    md = out.with_suffix(".md").read_text()
    for heading in (
        "# catdiff benchmark (tiny)",
        "## Training throughput",
        "## Sampling time",
        "## Data pipeline",
        "## catdiff vs diffusers",
        "## How each figure",
    ):
        assert heading in md
    assert "| figure | median | min | max |" in md


def test_a_model_of_another_size_is_compared_through_a_matched_one() -> None:
    wide = {**suite.TINY_UNET, "base_channels": 16}
    settings = dataclasses.replace(suite.TINY, models={"default": wide, "large": wide})
    b = suite.Bench(settings, data_root=None)
    assert b.compare == "matched"
    assert abs(b.params["matched"] / b.params["diffusers"] - 1) <= suite.PARAM_TOLERANCE
    groups = b.train_groups()
    assert groups[0] == (
        suite.TrainCase("matched", "fp32", again=suite.OWN_PROCESS),
        suite.TrainCase("diffusers", "fp32", again=suite.OWN_PROCESS),
        suite.TrainCase("matched", "fp32"),
        suite.TrainCase("diffusers", "fp32"),
    )
    assert (suite.TrainCase("default", "fp32"),) in groups
    assert any("base_channels=8" in note for note in b.report.notes)


def test_each_training_case_is_measured_under_its_own_id() -> None:
    """diffusers is timed again beside each compiled catdiff: the second timing gets its own id,
    so the JSON keeps both and each ratio divides figures measured side by side."""
    settings = dataclasses.replace(suite.TINY, compile=("fp32", "bf16"))
    groups = suite.Bench(settings, data_root=None).train_groups()
    ids = [case.id for group in groups for case in group]
    assert len(ids) == len(set(ids)), ids
    compiled = [g for g in groups if g[0].compile]
    assert [g[1].id for g in compiled] == [
        "train/diffusers/fp32/adamw@beside-compile",
        "train/diffusers/bf16/adamw@beside-compile",
    ]


def test_profile_kinds_cover_the_ops_of_a_step() -> None:
    """Every op lands in one kind; the convolutions carry FLOPs and a rate; the kinds and the
    untraced rest add up to the step's wall time."""
    from experiments.bench import profile, train_speed

    assert profile.kind_of("aten::mkldnn_convolution") == profile.CONV
    assert profile.kind_of("aten.convolution_backward") == profile.CONV
    assert profile.kind_of("aten::addmm") == profile.MATMUL
    assert profile.kind_of("aten._scaled_dot_product_flash_attention_for_cpu") == profile.MATMUL
    assert profile.kind_of("aten::native_group_norm_backward") == profile.NORM
    assert profile.kind_of("aten::_foreach_lerp_") == profile.OPTIM
    assert profile.kind_of("Optimizer.step#AdamW.step") == profile.OPTIM
    assert profile.kind_of("aten::silu") == profile.OTHER

    module = train_speed.build_module(dict(suite.TINY_UNET))
    x0 = train_speed.image_batch(4)
    step = train_speed.train_step_fn(module, "fp32", lambda: x0)
    figures = profile.profile_figures("train", "tiny", step, steps=2, precision="fp32")
    assert [f.label.split(": ", 1)[1] for f in figures] == [*profile.KINDS, profile.UNTRACED]
    conv = figures[0]
    assert conv.median > 0 and conv.gflop_s > 0
    # most of the step is inside ops, and no op's time is counted twice (e.g. per thread)
    assert 0.5 < sum(f.extra["share"] for f in figures[:-1]) <= 1.02


def test_an_error_in_an_own_process_stops_the_bench_with_its_message() -> None:
    from experiments.bench.own_process import OwnProcess

    with OwnProcess(catdiff_allocator=False, threads=1) as own:
        step = own.remote(
            "train_step", tool="diffusers", unet_kwargs=suite.TINY.peer, precision="fp8", batch=2
        )  # built there; fails when run
        with pytest.raises(RuntimeError, match="own process: ValueError: precision must be fp32"):
            step()
