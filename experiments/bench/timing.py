"""One timing helper and the result types every benchmark returns."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Timing:
    """Seconds per repetition: median, min and max over ``reps`` timed repetitions."""

    median: float
    min: float
    max: float
    reps: int
    warmup: int

    @classmethod
    def from_samples(cls, samples: Sequence[float], warmup: int) -> Timing:
        if not samples:
            raise ValueError("no timed repetitions")
        return cls(statistics.median(samples), min(samples), max(samples), len(samples), warmup)

    def scaled(self, factor: float) -> Timing:
        """The same timing multiplied by ``factor`` (extrapolating a shortened run)."""
        return Timing(
            self.median * factor, self.min * factor, self.max * factor, self.reps, self.warmup
        )


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(fn: Callable[[], object], reps: int, warmup: int) -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then ``reps`` times timed with ``time.perf_counter``.

    Warm-up runs let oneDNN build its kernels and the allocator reach a steady state; on CPU
    nothing is asynchronous, so the wall time of ``fn`` is its cost.
    """
    return measure_interleaved([fn], reps, warmup)[0]


def measure_interleaved(
    fns: Sequence[Callable[[], object]], reps: int, warmup: int
) -> list[Timing]:
    """``measure`` for several functions whose times will be compared: after each one's warm-up,
    every repetition times each function once, in turn, so a change in machine load during the
    run (another process starting) hits all of them alike instead of skewing their ratio.
    """
    if reps < 1 or warmup < 0:
        raise ValueError(f"measure needs reps >= 1 and warmup >= 0, got {reps}, {warmup}")
    for fn in fns:
        for _ in range(warmup):
            fn()
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(reps):
        for fn, times in zip(fns, samples):
            times.append(_seconds(fn))
    return [Timing.from_samples(times, warmup) for times in samples]


@dataclass
class Figure:
    """One reported number: median, min and max over the timed repetitions, and how it was got.

    ``gflop_s`` is the model FLOP rate the figure implies (model FLOPs of one repetition divided
    by its median time) and ``precision`` names the peak it is compared against; ``extra``
    holds derived values (utilisation of the peaks, parameter counts, labels).
    """

    id: str
    section: str
    label: str
    unit: str
    median: float
    min: float
    max: float
    reps: int
    warmup: int
    how: str
    precision: str | None = None
    gflop_s: float | None = None
    extra: dict[str, float | int | str] = field(default_factory=dict)


def rate_figure(
    id: str,
    section: str,
    label: str,
    timing: Timing,
    items: float,
    how: str,
    unit: str = "img/s",
    precision: str | None = None,
    flop_per_item: float | None = None,
    **extra: float | int | str,
) -> Figure:
    """Throughput ``items`` per repetition over its time: median, and min/max from max/min time."""
    median = items / timing.median
    return Figure(
        id=id,
        section=section,
        label=label,
        unit=unit,
        median=median,
        min=items / timing.max,
        max=items / timing.min,
        reps=timing.reps,
        warmup=timing.warmup,
        how=how,
        precision=precision,
        gflop_s=None if flop_per_item is None else flop_per_item * median / 1e9,
        extra=dict(extra),
    )


def seconds_figure(
    id: str,
    section: str,
    label: str,
    timing: Timing,
    how: str,
    precision: str | None = None,
    flop: float | None = None,
    **extra: float | int | str,
) -> Figure:
    """Seconds per repetition; ``flop`` is the model FLOPs of one repetition, if known."""
    return Figure(
        id=id,
        section=section,
        label=label,
        unit="s",
        median=timing.median,
        min=timing.min,
        max=timing.max,
        reps=timing.reps,
        warmup=timing.warmup,
        how=how,
        precision=precision,
        gflop_s=None if flop is None else flop / timing.median / 1e9,
        extra=dict(extra),
    )


def count_figure(
    id: str, section: str, label: str, value: float, unit: str, how: str, **extra: float | int | str
) -> Figure:
    """A counted (not timed) figure, e.g. FLOPs: median = min = max, one repetition."""
    return Figure(id, section, label, unit, value, value, value, 1, 0, how, extra=dict(extra))


@dataclass
class Ratio:
    """catdiff's median over diffusers' median for the same work (``better`` says which way wins)."""

    id: str
    label: str
    unit: str
    catdiff: float
    diffusers: float
    ratio: float
    better: str  # "higher" (throughput) or "lower" (time): the direction that favours catdiff
    catdiff_figure: str
    diffusers_figure: str


def ratio(id: str, label: str, catdiff: Figure, diffusers: Figure) -> Ratio:
    if catdiff.unit != diffusers.unit:
        raise ValueError(f"cannot compare {catdiff.unit} with {diffusers.unit}")
    return Ratio(
        id=id,
        label=label,
        unit=catdiff.unit,
        catdiff=catdiff.median,
        diffusers=diffusers.median,
        ratio=catdiff.median / diffusers.median,
        better="lower" if catdiff.unit == "s" else "higher",
        catdiff_figure=catdiff.id,
        diffusers_figure=diffusers.id,
    )
