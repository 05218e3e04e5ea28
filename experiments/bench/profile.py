"""Where the time of a step goes, by kind of op: the bench's ``profile`` section.

torch.profiler gives every op's self CPU time over a few steps; torch.utils.flop_counter gives
the FLOPs of the same ops. Grouped into kinds (convolutions, matmuls and attention,
normalisation, optimiser and EMA, the rest), the two give each kind's share of the step and the
FLOP rate it reaches there: what caps the model FLOP utilisation, read off one table.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable

from torch.profiler import ProfilerActivity, profile

from experiments.bench.flops import count_flops_by_op
from experiments.bench.timing import Figure, count_figure

CONV, MATMUL, NORM, OPTIM, OTHER = (
    "convolutions",
    "matmuls + attention",
    "GroupNorm",
    "optimiser, clipping, EMA",
    "elementwise + other ops",
)
UNTRACED = "outside any op (Python, autograd engine)"
KINDS = (CONV, MATMUL, NORM, OPTIM, OTHER)


def kind_of(op: str) -> str:
    """The kind of a profiler event or flop-counter op name (``aten::convolution_backward``,
    ``aten.addmm``, ``Optimizer.step#AdamW.step``, ...)."""
    name = op.lower()
    if "conv" in name:
        return CONV
    if any(k in name for k in ("foreach", "adam", "optimizer", "lerp", "vector_norm")):
        return OPTIM
    if "norm" in name:
        return NORM
    if any(k in name for k in ("::mm", ".mm", "addmm", "bmm", "linear", "matmul", "attention")):
        return MATMUL
    return OTHER


def self_seconds_by_kind(step: Callable[[], object], steps: int) -> tuple[dict[str, float], float]:
    """Profile ``steps`` calls of ``step``: self CPU seconds per kind per step, and the wall
    seconds per step (the difference is time spent outside any op)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        wall = (time.perf_counter() - start) / steps
    seconds: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        seconds[kind_of(event.key)] += event.self_cpu_time_total / 1e6 / steps
    return dict(seconds), wall


def flops_by_kind(step: Callable[[], object]) -> dict[str, int]:
    """Matmul/convolution FLOPs of one call of ``step``, per kind."""
    flops: dict[str, int] = defaultdict(int)
    for op, n in count_flops_by_op(step).items():
        flops[kind_of(op)] += n
    return dict(flops)


def profile_figures(
    what: str, label: str, step: Callable[[], object], steps: int, precision: str
) -> list[Figure]:
    """One figure per kind that ran (ms per step, its share of the step, its GFLOP/s), after
    one untimed call; the last row is the time outside any op."""
    step()
    flops = flops_by_kind(step)
    seconds, wall = self_seconds_by_kind(step, steps)
    rows = [(kind, seconds[kind]) for kind in KINDS if seconds.get(kind)]  # kinds that ran
    rows.append((UNTRACED, max(wall - sum(seconds.values()), 0.0)))
    how = (
        f"torch.profiler self CPU time over {steps} step(s) after one warm-up, per step; FLOPs "
        "of the same ops from torch.utils.flop_counter"
    )
    figures = []
    for kind, s in rows:
        fig = count_figure(
            f"profile/{what}/{kind.split()[0].strip(',').lower()}",
            "profile",
            f"{label}: {kind}",
            1000 * s,
            "ms/step",
            how,
            share=s / wall,
        )
        if flops.get(kind):
            fig.gflop_s, fig.precision = flops[kind] / s / 1e9, precision
        figures.append(fig)
    return figures
