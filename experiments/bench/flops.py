"""Model FLOPs (``torch.utils.flop_counter``) and this machine's peak FLOP rates.

FlopCounterMode counts matmuls and convolutions (2 FLOPs per multiply-add), not elementwise
work (GroupNorm, SiLU, the optimiser), so achieved FLOP/s is "useful model FLOP/s". Peaks are
measured in the same run on the same cores: a square matmul, and a 3x3 convolution, each in
fp32 and bf16 (cpu-facts.md: oneDNN convolutions reach about 3x the matmul rate on this CPU).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from experiments.bench.timing import Figure, measure, rate_figure

_aten = torch.ops.aten
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _cpu_sdpa(query, key, value, *args, out_shape=None, **kwargs) -> int:  # noqa: ANN001
    return flop_counter.sdpa_flop_count(query, key, value)


def _cpu_sdpa_backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:  # noqa: ANN001
    return flop_counter.sdpa_backward_flop_count(grad_out, query, key, value)


# torch 2.14's counter knows the CUDA attention kernels but not the CPU one that
# F.scaled_dot_product_attention dispatches to here; count it with the same formula.
_CPU_ATTENTION = {
    _aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa,
    _aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward,
}


def count_flops(fn: Callable[[], object]) -> int:
    """Matmul + convolution FLOPs of one call of ``fn`` (forward and, if it runs, backward)."""
    return sum(count_flops_by_op(fn).values())


def count_flops_by_op(fn: Callable[[], object]) -> dict[str, int]:
    """``count_flops`` per aten op (``"aten.convolution"``, ``"aten.addmm"``, ...)."""
    with FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION) as counter:
        fn()
    return {str(op): n for op, n in counter.get_flop_counts().get("Global", {}).items()}


def matmul_peak(n: int, precision: str, reps: int, warmup: int) -> Figure:
    """``a @ b`` for two (n, n) matrices: 2 n^3 FLOPs."""
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=g).to(DTYPES[precision]) for _ in range(2))
    timing = measure(lambda: a @ b, reps, warmup)
    return rate_figure(
        f"peak/matmul/{precision}",
        "peak",
        f"matmul {n}x{n} {precision}",
        timing,
        items=2 * n**3 / 1e9,
        unit="GFLOP/s",
        how=f"a @ b with a, b ({n}, {n}) {precision}; 2n^3 FLOPs per call",
        precision=precision,
    )


def conv_peak(
    batch: int, channels: int, size: int, precision: str, reps: int, warmup: int
) -> Figure:
    """3x3 convolution, ``channels`` in and out, padding 1: 2 * 9 * C^2 * H * W FLOPs per image."""
    g = torch.Generator().manual_seed(0)
    dtype = DTYPES[precision]
    x = torch.randn(batch, channels, size, size, generator=g).to(dtype)
    w = torch.randn(channels, channels, 3, 3, generator=g).to(dtype)
    timing = measure(lambda: F.conv2d(x, w, padding=1), reps, warmup)
    flop = 2 * 9 * channels**2 * size * size * batch
    return rate_figure(
        f"peak/conv3x3/{precision}",
        "peak",
        f"conv 3x3 {channels}ch {size}x{size} batch {batch} {precision}",
        timing,
        items=flop / 1e9,
        unit="GFLOP/s",
        how=f"F.conv2d on ({batch}, {channels}, {size}, {size}) {precision} tensors (oneDNN)",
        precision=precision,
    )


def add_utilisation(figures: list[Figure]) -> None:
    """Set ``extra['util_matmul']`` / ``['util_conv']``: a figure's GFLOP/s over the best peak rep.

    The peak is the fastest repetition (as cpu-facts.md's "best of 5"), so utilisation is not
    flattered by a slow peak measurement.
    """
    peaks = {f.id: f.max for f in figures if f.section == "peak"}
    for fig in figures:
        if fig.gflop_s is None or fig.section == "peak":
            continue
        for kernel in ("matmul", "conv3x3"):
            peak = peaks.get(f"peak/{kernel}/{fig.precision}")
            if peak:
                fig.extra[f"util_{kernel.removesuffix('3x3')}"] = fig.gflop_s / peak
