"""Speed benchmark of catdiff against diffusers on this machine: ``make bench`` / ``bench-quick``.

    python -m experiments.bench                 # full run (12-14 min on 2 idle cores): the numbers to quote
    python -m experiments.bench --quick         # < 2 min, smaller batch and chains, labelled as such
    python -m experiments.bench --out results/x.json --threads 2

Measures, with the same thread count throughout: the machine's peak FLOP
rates (matmul, 3x3 conv; fp32, bf16), model FLOPs per image, training images/s (catdiff's real
training step through a plain loop; fp32 and bf16 autocast; AdamW variants; a larger model),
sampling time (DDPM 1000 steps extrapolated from a shorter chain, DDIM 50 and 20), data
pipeline images/s (decode from files; batches from memory), Lightning's per-step overhead,
and diffusers' UNet2DModel of the same parameter count doing the same work. Writes JSON to
``--out`` (default ``experiments/bench/<date>-cpu.json``) and a markdown table next to it.

The bench's process runs with catdiff's allocator settings (``catdiff.allocator``), as
``catdiff.train`` does. The comparisons with diffusers are timed twice: each tool in a spawned
process of its own, as its users run it (catdiff with its allocator settings, diffusers with the
C library's defaults: the headline ratios), and both in this process (the same allocator
settings: what is left when the process is the same).

A benchmark, not a test: close other work first (the figures are medians, but two busy cores
still give wrong numbers). ``make bench`` leaves OMP_WAIT_POLICY as the environment has it:
unset is what a training run alone on the machine gets (``catdiff.train`` sets PASSIVE only
where processes share the cores), and PASSIVE slowed a default-model fp32 step by ~25% here.
The report records the value.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from catdiff import allocator
from catdiff.data import synthetic_cats
from catdiff.diffusion.generate import with_precision
from catdiff.errors import UserError
from catdiff.models import UNet, count_parameters
from catdiff.precision import auto_channels_last
from experiments.bench import data_pipeline, flops, peer, profile, train_speed, workloads
from experiments.bench.own_process import OwnProcess
from experiments.bench.report import Report, machine_info, to_markdown, write
from experiments.bench.timing import (
    Figure,
    Timing,
    count_figure,
    measure,
    measure_interleaved,
    rate_figure,
    ratio,
    seconds_figure,
)

ROOT = Path(__file__).resolve().parents[2]  # the checkout
CATFACES = ROOT.parent / "shared" / "data" / "catfaces64"
BUSY_LOAD = 0.5  # 1-min load average above which the report warns that others were running
PARAM_TOLERANCE = 0.05  # catdiff's model and diffusers' must have parameter counts within 5%

# conf/model/unet_tiny.yaml: Lightning's overhead shows best against a step that costs little.
TINY_UNET = {
    "base_channels": 8,
    "channel_mults": (1, 2),
    "num_res_blocks": 1,
    "attention_levels": (1,),
    "attention_heads": 1,
    "norm_groups": 4,
}


@dataclass(frozen=True)
class TrainCase:
    model: str  # key of Settings.models, or "diffusers"
    precision: str = "fp32"
    optimizer: str = "adamw"  # key of train_speed.OPTIMIZERS (catdiff only)
    # None: what training does by default (module.channels_last=auto: on for fp32 on CPU, off
    # for bf16); True/False: that layout, as a variant timed beside the default step.
    channels_last: bool | None = None
    compile: bool = False  # module.compile=true: torch.compile the training forward/backward
    # A second measurement of the same case, in another group (its own id, so that each ratio
    # compares figures measured side by side): e.g. diffusers again beside a compiled catdiff.
    again: str = ""

    @property
    def id(self) -> str:
        layout = {None: "", True: "/channels-last", False: "/contiguous"}[self.channels_last]
        compiled = "/compile" if self.compile else ""
        again = f"@{self.again}" if self.again else ""
        return f"train/{self.model}/{self.precision}/{self.optimizer}{layout}{compiled}{again}"

    @property
    def uses_channels_last(self) -> bool:
        if self.channels_last is not None:
            return self.channels_last
        return auto_channels_last("cpu", train_speed.LIGHTNING_PRECISION[self.precision])


@dataclass(frozen=True)
class SampleCase:
    model: str  # key of Settings.models, or "diffusers"
    kind: str  # ddpm | ddim | dpm (DPM-Solver++(2M), logsnr steps: the recommended recipe's)
    steps: int  # network evaluations of the full chain (T = 1000 for DDPM)
    precision: str = "fp32"
    again: str = ""  # as TrainCase.again

    @property
    def id(self) -> str:
        again = f"@{self.again}" if self.again else ""
        return f"sample/{self.model}/{self.kind}{self.steps}/{self.precision}{again}"


@dataclass(frozen=True)
class Settings:
    """What one mode runs. Every timed figure is the median of ``reps`` after ``warmup``."""

    mode: str
    batch: int = 128
    reps: int = 5
    warmup: int = 2
    train_steps_per_rep: int = 2
    sample_n: int = 64
    sample_timed_steps: int = 10  # longer chains are timed over their first steps and scaled
    decode_files: int = 20_000
    warm_batches: int = 50
    matmul_n: int = 2048
    conv: tuple[int, int, int] = (64, 128, 28)  # batch, channels, size
    lightning_steps: int = 20
    # Precisions in which torch.compile'd training is also timed, each beside diffusers again:
    # each compile takes about 2 min on a 2-core CPU. fp32 is where fusing the elementwise ops
    # could matter (bf16 is conv-bound: see the profile section).
    compile: tuple[str, ...] = ("fp32", "bf16")
    # The catdiff-only training variants (TRAIN_VARIANTS: optimisers, layouts, the large model).
    variants: bool = True
    # default: conf/model/unet.yaml (the seed's); recommended: conf/model/unet_small.yaml, the
    # model of conf/experiment/recommended.yaml; large: 4x the default's parameters.
    models: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {
            "default": {},
            "recommended": {"base_channels": 16},
            "large": {"base_channels": 64},
        }
    )
    peer: dict[str, Any] = field(default_factory=lambda: dict(peer.DIFFUSERS_UNET))
    lightning_model: dict[str, Any] = field(default_factory=lambda: dict(TINY_UNET))
    caveat: str = ""

    def summary(self) -> dict[str, Any]:
        """Every setting but the mode and its caveat (which the report states on their own)."""
        skip = ("mode", "caveat")
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip
        }


FULL = Settings(mode="full")
QUICK = Settings(
    mode="quick",
    batch=32,
    warmup=1,
    train_steps_per_rep=1,
    sample_n=16,
    sample_timed_steps=10,
    decode_files=1024,
    warm_batches=20,
    lightning_steps=10,
    compile=(),
    variants=False,
    caveat="quick mode: batch 32 (not 128), 16 images sampled (not 64), chains timed over their "
    "first 10 steps and extrapolated, at most 1,024 files decoded, 1 step per rep, no training "
    "variants (optimisers, layouts, the large model): indicative only",
)
# Harness check for tests: toy models, tiny kernels; the numbers mean nothing.
TINY = Settings(
    mode="tiny",
    batch=4,
    reps=2,
    warmup=1,
    train_steps_per_rep=1,
    sample_n=2,
    sample_timed_steps=2,
    decode_files=8,
    warm_batches=2,
    matmul_n=64,
    conv=(2, 8, 8),
    lightning_steps=2,
    compile=(),
    caveat="tiny mode: toy models and kernels, 2 reps; checks the harness, the numbers mean nothing",
    models={
        "default": dict(TINY_UNET),
        "recommended": {**TINY_UNET, "base_channels": 4},
        "large": {**TINY_UNET, "base_channels": 12},
    },
    peer={
        "sample_size": 28,
        "in_channels": 1,
        "out_channels": 1,
        "layers_per_block": 1,
        "block_out_channels": (8, 16),
        "norm_num_groups": 4,
        "attention_head_dim": 16,
        "down_block_types": ("DownBlock2D", "AttnDownBlock2D"),
        "up_block_types": ("AttnUpBlock2D", "UpBlock2D"),
    },
)
MODES = {"full": FULL, "quick": QUICK, "tiny": TINY}

PRECISIONS = ("fp32", "bf16")
# catdiff-only figures; the comparisons with diffusers are paired in Bench.train_groups.
TRAIN_VARIANTS = (
    TrainCase("default", "fp32", "adamw-foreach"),
    TrainCase("default", "fp32", "adamw-fused"),
    TrainCase("default", "bf16", "adamw-fused"),
    TrainCase("default", "fp32", channels_last=False),  # the opposite of each default layout
    TrainCase("default", "bf16", channels_last=True),
    TrainCase("large", "fp32"),
    TrainCase("large", "bf16"),
)

BESIDE_VARIANTS = "beside-variants"
# Timed in a process of its own (experiments.bench.own_process), as users run each tool:
# catdiff with its allocator settings (catdiff.allocator, as catdiff.train sets them), diffusers
# with the C library's defaults. Without this tag a case runs in the bench's process, which has
# catdiff's allocator settings.
OWN_PROCESS = "own-process"


def variant_groups() -> list[tuple[TrainCase, ...]]:
    """TRAIN_VARIANTS of the default model, each precision's interleaved with a fresh timing of
    the default step (its own id), so the drift between groups cannot pass for a speed-up; the
    larger model's cases on their own."""
    groups: list[tuple[TrainCase, ...]] = []
    for p in PRECISIONS:
        same = tuple(c for c in TRAIN_VARIANTS if c.model == "default" and c.precision == p)
        groups.append((TrainCase("default", p, again=BESIDE_VARIANTS), *same))
    return groups + [(c,) for c in TRAIN_VARIANTS if c.model != "default"]


SAMPLE_VARIANTS = tuple(
    SampleCase(model, kind, steps, p)
    for model, kind, steps in (
        ("default", "ddpm", 1000),
        ("default", "ddim", 20),
        ("default", "dpm", 20),
        ("recommended", "dpm", 20),
        ("recommended", "dpm", 25),  # the recipe's own sampler (conf/experiment/recommended.yaml)
    )
    for p in PRECISIONS
)
SAMPLER_NAMES = {"ddpm": "DDPM", "ddim": "DDIM", "dpm": "DPM-Solver++(2M)"}
# Sections --only can pick; model sizes and FLOPs are always counted (the others need them).
SECTIONS = ("peak", "train", "sample", "data", "lightning", "profile")


def matched_catdiff(kwargs: dict[str, Any], target: int) -> tuple[dict[str, Any], str]:
    """``kwargs`` if that UNet is within 5% of ``target`` parameters, else the closest width that is.

    Returns the kwargs and a one-line note saying which was used.
    """
    params = count_parameters(UNet(**kwargs))
    if abs(params / target - 1) <= PARAM_TOLERANCE:
        return kwargs, f"catdiff {params:,} vs diffusers {target:,} parameters: the same model size"
    groups = kwargs.get("norm_groups", 8)
    best: tuple[float, dict[str, Any], int] | None = None
    for base in range(groups, 8 * kwargs.get("base_channels", 32) + 1, groups):
        candidate = {**kwargs, "base_channels": base}
        try:
            n = count_parameters(UNet(**candidate))
        except UserError:
            continue
        if best is None or abs(n / target - 1) < best[0]:
            best = (abs(n / target - 1), candidate, n)
    if best is None or best[0] > PARAM_TOLERANCE:
        raise UserError(f"no catdiff UNet width within 5% of diffusers' {target:,} parameters")
    return best[1], (
        f"catdiff's model has {params:,} parameters, diffusers' {target:,}: compared with a "
        f"catdiff UNet of base_channels={best[1]['base_channels']} ({best[2]:,} parameters)"
    )


def _seconds_of(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _repeat(fn: Callable[[], object], k: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(k):
            fn()

    return run


class Bench:
    """Runs the figures of one mode in order, printing a line per figure as it completes."""

    def __init__(self, settings: Settings, data_root: Path | None) -> None:
        self.s = settings
        self.data_root = data_root
        self.report = Report(settings.mode, machine_info(), settings.summary())
        if settings.caveat:
            self.report.notes.append(settings.caveat)
        load = self.report.machine["load_average_start"]
        if load and load[0] > BUSY_LOAD:
            self.report.notes.append(
                f"the machine was busy when the run started (1-min load average {load[0]}): "
                "expect slower, noisier figures than on an idle machine (with as many threads "
                "as cores, every parallel region waits for the other process: try --threads 1)"
            )
        self.models = dict(settings.models)
        self.flop_fwd: dict[str, float] = {}  # model FLOPs per image
        self.flop_train: dict[str, float] = {}
        # The catdiff model compared with diffusers: the default one unless its size differs.
        target = count_parameters(self._net("diffusers"))
        kwargs, note = matched_catdiff(self.models["default"], target)
        self.compare = "default" if kwargs == self.models["default"] else "matched"
        self.models[self.compare] = kwargs
        self.report.notes.append(note)
        self.params = {key: count_parameters(self._net(key)) for key in [*self.models, "diffusers"]}
        self._own: dict[str, OwnProcess] = {}  # per tool, started by its first OWN_PROCESS case

    # ---- models ------------------------------------------------------------------------------

    def _net(self, key: str) -> torch.nn.Module:
        if key == "diffusers":
            return peer.build_unet(self.s.peer)
        torch.manual_seed(0)
        return UNet(**self.models[key])

    def _own_process(self, tool: str) -> OwnProcess:
        if tool not in self._own:
            self._own[tool] = OwnProcess(catdiff_allocator=tool == "catdiff")
        return self._own[tool]

    def _workload(self, case: TrainCase | SampleCase, builder: str, **kwargs: Any) -> Callable:
        """``workloads.BUILDERS[builder]`` for ``case``'s model, built here or in the tool's own
        process (``case.again == OWN_PROCESS``)."""
        diffusers = case.model == "diffusers"
        kwargs |= {
            "tool": "diffusers" if diffusers else "catdiff",
            "unet_kwargs": self.s.peer if diffusers else self.models[case.model],
            "precision": case.precision,
        }
        if case.again == OWN_PROCESS:
            return self._own_process(kwargs["tool"]).remote(builder, **kwargs)
        return workloads.BUILDERS[builder](**kwargs)

    def _train_step(self, case: TrainCase, batch: int) -> Callable[[], None]:
        return self._workload(
            case,
            "train_step",
            batch=batch,
            optimizer=case.optimizer,
            channels_last=case.uses_channels_last,
            compile=case.compile,
        )

    def _label(self, key: str) -> str:
        return f"{key} ({self.params[key] / 1e6:.2f}M)"

    # ---- figures -----------------------------------------------------------------------------

    def peaks(self) -> list[Figure]:
        s, figures = self.s, []
        for precision in PRECISIONS:
            figures.append(flops.matmul_peak(s.matmul_n, precision, s.reps, s.warmup))
            figures.append(flops.conv_peak(*s.conv, precision, s.reps, s.warmup))
        return figures

    def model_flops(self) -> list[Figure]:
        """FLOPs per image of every model, forward and training step."""
        figures = []
        for key in [*self.models, "diffusers"]:
            net, x, t = self._net(key), train_speed.image_batch(2), torch.tensor([10, 500])
            forward = peer.forward_fn(net) if key == "diffusers" else net
            with torch.no_grad():
                self.flop_fwd[key] = flops.count_flops(lambda: forward(x, t)) / 2  # noqa: B023
            self.flop_train[key] = flops.count_flops(self._train_step(TrainCase(key), 2)) / 2
            how = "torch.utils.flop_counter on a batch of 2 (matmul, conv, attention), per image"
            for what, value in (
                ("forward", self.flop_fwd[key]),
                ("train step", self.flop_train[key]),
            ):
                figures.append(
                    count_figure(
                        f"flops/{key}/{what.replace(' ', '_')}",
                        "flops",
                        f"{self._label(key)} {what}",
                        value / 1e9,
                        "GFLOP/img",
                        how + ("; forward + backward" if what == "train step" else ""),
                        params=self.params[key],
                    )
                )
        return figures

    def train(self, cases: tuple[TrainCase, ...]) -> list[Figure]:
        """Training images/s of ``cases``, measured interleaved (see ``measure_interleaved``).

        A compiled case's first step (which compiles) is timed on its own before the warm-up:
        ``compile_s`` is that step's time less a steady step's.
        """
        s = self.s
        steps = [_repeat(self._train_step(c, s.batch), s.train_steps_per_rep) for c in cases]
        first = {i: _seconds_of(step) for i, (c, step) in enumerate(zip(cases, steps)) if c.compile}
        timings = measure_interleaved(steps, s.reps, s.warmup)
        figures = [self._train_figure(c, t) for c, t in zip(cases, timings)]
        if cases[0].again == BESIDE_VARIANTS:
            for fig in figures[1:]:
                relative = fig.median / figures[0].median
                fig.extra["vs_plain"] = round(relative, 3)
                fig.label += f" ({relative:.2f}x the default step timed beside it)"
        for i, seconds in first.items():
            steady = timings[i].median
            figures[i].extra["compile_s"] = round(seconds - steady, 1)
            figures[i].label += f", torch.compile (compile ~{seconds - steady:.0f} s)"
        return figures

    def _train_figure(self, case: TrainCase, timing: Timing) -> Figure:
        s = self.s
        optimizer = "adamw, EMAModel" if case.model == "diffusers" else case.optimizer
        layout = ", channels_last" if case.model != "diffusers" and case.uses_channels_last else ""
        return rate_figure(
            case.id,
            "train",
            f"{self._label(case.model)} {case.precision}, {optimizer}{layout}{_where(case)}",
            timing,
            items=s.batch * s.train_steps_per_rep,
            how=self._train_how(case),
            precision=case.precision,
            flop_per_item=self.flop_train[case.model],
            params=self.params[case.model],
            batch=s.batch,
        )

    def _train_how(self, case: TrainCase) -> str:
        steps = f"{self.s.train_steps_per_rep} step(s) per rep on one fixed batch"
        if case.model == "diffusers":
            return (
                f"diffusers: DDPMScheduler.add_noise, UNet2DModel, MSE, backward, clip 1.0, "
                f"AdamW lr 5e-4, EMAModel(foreach) update; {steps}{_where_how(case)}"
            )
        autocast = "bf16 autocast around training_step" if case.precision == "bf16" else "fp32"
        return (
            f"plain loop: DiffusionModule's loss ({autocast}), backward, clip_grad_norm "
            f"1.0, torch.optim.AdamW(lr=5e-4{_kwargs(train_speed.OPTIMIZERS[case.optimizer])}), "
            f"EMA update; {steps}{_where_how(case)}"
        )

    def sample(self, cases: tuple[SampleCase, ...]) -> list[Figure]:
        """Sampling seconds of ``cases``, measured interleaved; long chains extrapolated."""
        s = self.s
        timed = [min(c.steps, s.sample_timed_steps) for c in cases]
        runs = [self._sample_fn(c, k) for c, k in zip(cases, timed)]
        timings = measure_interleaved([run for run, _ in runs], s.reps, s.warmup)
        return [
            self._sample_figure(c, t.scaled(c.steps / k), k, how)
            for c, k, t, (_, how) in zip(cases, timed, timings, runs)
        ]

    def _sample_fn(self, case: SampleCase, timed: int) -> tuple[Callable[[], object], str]:
        chain = dict(kind=case.kind, steps=case.steps, timed_steps=timed, n=self.s.sample_n)
        run = self._workload(case, "sample_chain", **chain)
        if case.model == "diffusers":
            how = "diffusers DDIMScheduler (trailing, clip), UNet2DModel, inference_mode"
        else:
            how = f"catdiff.diffusion.sample with {SAMPLER_NAMES[case.kind]} (inference_mode)"
        return run, how + _where_how(case)

    def _sample_figure(self, case: SampleCase, timing: Timing, timed: int, how: str) -> Figure:
        s = self.s
        label = (
            f"{self._label(case.model)} {SAMPLER_NAMES[case.kind]} {case.steps} steps, "
            f"{s.sample_n} images, {case.precision}{_where(case)}"
        )
        if timed < case.steps:
            label += f" (extrapolated from {timed} steps)"
            how += f"; timed over the first {timed} of {case.steps} steps, x {case.steps / timed:g}"
        return seconds_figure(
            case.id,
            "sample",
            label,
            timing,
            how=how + (", bf16: the network cast once" if case.precision == "bf16" else ""),
            precision=case.precision,
            flop=self.flop_fwd[case.model] * s.sample_n * case.steps,
            params=self.params[case.model],
            batch=s.sample_n,
        )

    def data(self) -> list[Figure]:
        s = self.s
        train = self.report.figure(TrainCase("default").id)
        with tempfile.TemporaryDirectory(prefix="catdiff-bench-") as tmp:
            paths, source = data_pipeline.image_files(self.data_root, s.decode_files, Path(tmp))
            decode = data_pipeline.decode_fn(paths)
            cold = measure(decode, s.reps, s.warmup)
            images = decode()
        warm = measure(data_pipeline.warm_fn(images, s.batch, s.warm_batches), s.reps, s.warmup)
        figures = [
            rate_figure(
                "data/cold",
                "data",
                f"cold: decode {len(paths)} files to 28x28 grey",
                cold,
                items=len(paths),
                how=f"list_images + decode_images on {source} (files in the OS cache after warm-up)",
            ),
            rate_figure(
                "data/warm",
                "data",
                f"warm: TensorBatches + uint8->[-1,1] + flip, batch {s.batch}",
                warm,
                items=s.batch * s.warm_batches,
                how=f"{s.warm_batches} batches per rep from the in-memory uint8 tensor: "
                "CatDataModule.train_dataloader(), then its on_after_batch_transfer",
            ),
        ]
        if train is not None:
            for fig in figures:
                fig.extra["x_train"] = fig.median / train.median
            self.report.notes.append(
                f"data pipeline 'x training' = its img/s over training's ({train.label}: "
                f"{train.median:.0f} img/s)"
            )
        return figures

    def lightning(self) -> list[Figure]:
        """Trainer.fit's step-to-step time against the plain loop doing the same work (tiny model)."""
        s = self.s
        # One epoch holds every step: no epoch-end hooks inside the timed intervals.
        images = data_pipeline.tiled(
            synthetic_cats(64, 28), (s.warmup + s.lightning_steps + 3) * s.batch
        )
        intervals = train_speed.lightning_step_times(
            self.s.lightning_model, images, s.batch, "fp32", s.warmup + s.lightning_steps
        )
        in_trainer = Timing.from_samples(intervals[s.warmup :], s.warmup)
        batches = train_speed.endless_batches(train_speed.datamodule_for(images, s.batch))
        module = train_speed.build_module(self.s.lightning_model)
        plain = measure(
            train_speed.train_step_fn(module, "fp32", batches), s.lightning_steps, s.warmup
        )
        overhead_ms = 1000 * (in_trainer.median - plain.median)
        train = self.report.figure(TrainCase("default").id)
        if train is not None:
            step_ms = 1000 * s.batch / train.median
            self.report.notes.append(
                f"Lightning adds {overhead_ms:.1f} ms per step (tiny model), "
                f"{overhead_ms / step_ms:.1%} of a {train.label} step ({step_ms:.0f} ms)"
            )
        params = count_parameters(UNet(**self.s.lightning_model))
        common = {"items": s.batch, "batch": s.batch, "params": params}
        return [
            rate_figure(
                "lightning/trainer",
                "lightning",
                f"tiny UNet ({params / 1e3:.0f}k) fp32 in Trainer.fit",
                in_trainer,
                how="time between on_train_batch_start calls in Trainer.fit (clip 1.0, no "
                "logger, checkpoints or progress bar); data, transform, step, EMA and hooks",
                overhead_ms=overhead_ms,
                overhead_pct=overhead_ms / (1000 * plain.median),
                **common,
            ),
            rate_figure(
                "lightning/plain",
                "lightning",
                f"tiny UNet ({params / 1e3:.0f}k) fp32 plain loop",
                plain,
                how="the same data, transform and training step in a plain loop",
                **common,
            ),
        ]

    def profile(self) -> list[Figure]:
        """Where the time of the default model's bf16 training step and of one bf16 sampling
        evaluation (the recommended recipe's model) goes, by kind of op."""
        s = self.s
        train = self._train_step(TrainCase("default", "bf16"), s.batch)
        net, _ = with_precision(self._net("recommended").eval(), "bf16", torch.device("cpu"))
        x, t = train_speed.image_batch(s.sample_n), torch.full((s.sample_n,), 500)

        def evaluate() -> None:
            with torch.inference_mode():
                net(x, t)

        return [
            *profile.profile_figures(
                "train",
                f"{self._label('default')} bf16 train step, batch {s.batch}",
                train,
                steps=s.train_steps_per_rep,
                precision="bf16",
            ),
            *profile.profile_figures(
                "sample",
                f"{self._label('recommended')} bf16 forward, batch {s.sample_n}",
                evaluate,
                steps=5,
                precision="bf16",
            ),
        ]

    # ---- the run -----------------------------------------------------------------------------

    def plan(self, sections: Iterable[str]) -> list[Callable[[], list[Figure]]]:
        """The measurements of ``sections``, in order; each returns its figures."""
        sections = set(sections)
        steps: list[Callable[[], list[Figure]]] = [self.peaks] if "peak" in sections else []
        steps.append(self.model_flops)
        if "train" in sections:
            steps += [partial(self.train, group) for group in self.train_groups()]
        if "sample" in sections:
            steps += [partial(self.sample, group) for group in self.sample_groups()]
        if "data" in sections:
            steps.append(self.data)
        if "lightning" in sections:
            steps.append(self.lightning)
        if "profile" in sections:
            steps.append(self.profile)
        return steps

    def train_groups(self) -> list[tuple[TrainCase, ...]]:
        """catdiff beside diffusers (in its own process, and in this one) per precision, measured
        interleaved; then the variants."""
        pairs = [
            (
                TrainCase(self.compare, p, again=OWN_PROCESS),
                TrainCase("diffusers", p, again=OWN_PROCESS),
                TrainCase(self.compare, p),
                TrainCase("diffusers", p),
            )
            for p in PRECISIONS
        ]
        default = (
            [] if self.compare == "default" else [(TrainCase("default", p),) for p in PRECISIONS]
        )
        compiled = [
            (
                TrainCase(self.compare, p, "adamw-fused", compile=True),
                TrainCase("diffusers", p, again="beside-compile"),
            )
            for p in PRECISIONS
            if p in self.s.compile
        ]
        return pairs + default + (variant_groups() if self.s.variants else []) + compiled

    def sample_groups(self) -> list[tuple[SampleCase, ...]]:
        """DDIM 50 of catdiff beside diffusers' (as in ``train_groups``) per precision, then the
        other chains."""

        def ddim50(model: str, p: str, again: str = "") -> SampleCase:
            return SampleCase(model, "ddim", 50, p, again)

        pairs = [
            (
                ddim50(self.compare, p, OWN_PROCESS),
                ddim50("diffusers", p, OWN_PROCESS),
                ddim50(self.compare, p),
                ddim50("diffusers", p),
            )
            for p in PRECISIONS
        ]
        default = [] if self.compare == "default" else [(ddim50("default", p),) for p in PRECISIONS]
        return pairs + default + [(c,) for c in SAMPLE_VARIANTS]

    def run(self, sections: Iterable[str] = SECTIONS, log: Callable[[str], None] = print) -> Report:
        start = time.perf_counter()
        plan = self.plan(sections)
        with warnings.catch_warnings():
            # training_step's self.log() outside a Trainer warns on every call; nothing to see.
            warnings.filterwarnings("ignore", message=".*self.log.*")
            warnings.filterwarnings("ignore", category=UserWarning, module="lightning")
            try:
                for i, step in enumerate(plan, 1):
                    for fig in step():
                        self.report.figures.append(fig)
                        log(f"[{i}/{len(plan)} {time.perf_counter() - start:5.0f}s] {_line(fig)}")
            finally:
                for own in self._own.values():
                    own.close()
                self._own.clear()
        flops.add_utilisation(self.report.figures)
        self._ratios()
        self.report.wall_s = time.perf_counter() - start
        return self.report

    def _ratios(self) -> None:
        """catdiff / diffusers for every diffusers figure measured beside a catdiff one: own
        process against own process, the bench's process against the bench's process."""
        groups: list[tuple[TrainCase | SampleCase, ...]] = [
            *self.train_groups(),
            *self.sample_groups(),
        ]
        for group in groups:
            catdiff = {c.again: c for c in group if c.model != "diffusers"}
            for theirs in (c for c in group if c.model == "diffusers"):
                ours = catdiff.get(theirs.again, group[0])
                a, b = self.report.figure(ours.id), self.report.figure(theirs.id)
                if a is None or b is None:
                    continue
                if isinstance(ours, TrainCase):
                    how = ", torch.compile + fused AdamW" if ours.compile else ""
                    id = f"train_{ours.precision}" + ("_compile" if ours.compile else "")
                    label = f"training img/s, {ours.precision}{how}"
                else:
                    id = f"sample_{ours.kind}{ours.steps}_{ours.precision}"
                    label = (
                        f"{ours.kind.upper()} {ours.steps} steps, {self.s.sample_n} images, "
                        f"seconds, {ours.precision}"
                    )
                if theirs.again == OWN_PROCESS:
                    label += ", each in its own process"
                else:
                    id += "_same_process"
                    label += ", both in the bench's process (catdiff's allocator settings)"
                self.report.ratios.append(ratio(id, label, a, b))


def _where(case: TrainCase | SampleCase) -> str:
    """Label suffix: which process ran the figure (only where the bench times both ways)."""
    if case.again == OWN_PROCESS:
        return ", own process"
    return ", bench's process" if case.model == "diffusers" else ""


def _where_how(case: TrainCase | SampleCase) -> str:
    if case.again == OWN_PROCESS:
        allocator = (
            "the C library's default allocator"
            if case.model == "diffusers"
            else "catdiff's allocator settings, as catdiff.train has them"
        )
        return (
            f"; in a process of its own (spawned, same environment and threads, {allocator}), "
            "timed from here call by call"
        )
    return "; in the bench's process, with catdiff's allocator settings (catdiff.allocator)"


def _kwargs(kwargs: dict[str, Any]) -> str:
    return "".join(f", {k}={v}" for k, v in kwargs.items())


def _line(fig: Figure) -> str:
    rate = f", {fig.gflop_s:.0f} GFLOP/s" if fig.gflop_s else ""
    return f"{fig.label}: {fig.median:.4g} {fig.unit} (min {fig.min:.4g}, max {fig.max:.4g}{rate})"


def default_out() -> Path:
    return Path("experiments/bench") / f"{dt.date.today().isoformat()}-cpu.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.bench", description=__doc__.split("\n")[0]
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick",
        action="store_const",
        const="quick",
        dest="mode",
        help="< 2 min, smaller batch and chains (labelled)",
    )
    mode.add_argument(
        "--tiny",
        action="store_const",
        const="tiny",
        dest="mode",
        help="toy sizes: checks the harness, numbers mean nothing",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON path (default experiments/bench/<date>-cpu.json); .md next to it",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's choice)"
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=CATFACES,
        help="image folder for the decode benchmark (synthetic files if absent)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        help="run only these sections",
    )
    parser.set_defaults(mode="full")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Report:
    args = parse_args(argv)
    allocator.keep_freed_memory()  # catdiff's process settings, as catdiff.train has them
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    settings = MODES[args.mode]
    print(f"catdiff bench, {args.mode} mode, {torch.get_num_threads()} threads", flush=True)
    report = Bench(settings, args.data).run(args.only, log=lambda line: print(line, flush=True))
    json_path, md_path = write(report, args.out or default_out())
    print("\n" + to_markdown(report))
    print(f"wrote {json_path} and {md_path}")
    return report


if __name__ == "__main__":
    main()
