"""The benchmark's report: machine header, JSON file, markdown tables."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from catdiff import allocator
from catdiff.machine import cpu_model
from experiments.bench.timing import Figure, Ratio

SECTIONS = {
    "peak": "Peak compute of this machine",
    "flops": "Model FLOPs per image",
    "train": "Training throughput",
    "sample": "Sampling time",
    "data": "Data pipeline vs training consumption",
    "lightning": "Lightning overhead per step",
    "profile": "Where the time goes (torch.profiler, by kind of op)",
}
# Derived values shown as extra table columns, in this order, with their headers.
_COLUMNS = {
    "params": "params",
    "batch": "batch",
    "gflop_s": "GFLOP/s",
    "util_matmul": "% matmul peak",
    "util_conv": "% conv peak",
    "x_train": "x training img/s",
    "overhead_ms": "overhead ms/step",
    "overhead_pct": "overhead % of step",
    "share": "share of step",
}


def machine_info() -> dict[str, Any]:
    """Who measured: CPU, cores, library versions, threads, date, and how busy the machine was."""
    import diffusers
    import lightning

    return {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "lightning": lightning.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
        "allocator": allocator.describe(),
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "load_average_start": _load_average(),
    }


def _load_average() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


@dataclass
class Report:
    """Everything one run measured; ``to_json`` is the file's content."""

    mode: str
    machine: dict[str, Any]
    settings: dict[str, Any]
    figures: list[Figure] = field(default_factory=list)
    ratios: list[Ratio] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    def figure(self, id: str) -> Figure | None:
        return next((f for f in self.figures if f.id == id), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "machine": self.machine,
            "settings": self.settings,
            "figures": {f.id: dataclasses.asdict(f) for f in self.figures},
            "ratios": {r.id: dataclasses.asdict(r) for r in self.ratios},
            "notes": self.notes,
            "wall_s": self.wall_s,
        }


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        if x == 0 or 0.01 <= abs(x) < 1e6:
            return f"{x:.3g}" if abs(x) < 100 else f"{x:,.0f}"
        return f"{x:.3g}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def _table(rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    return lines + ["| " + " | ".join(row) + " |" for row in rows[1:]]


def figures_table(figures: list[Figure]) -> list[str]:
    """Figure, median, min, max, unit, then whichever derived columns any figure has."""
    columns = [k for k in _COLUMNS if any(k in f.extra or getattr(f, k, None) for f in figures)]
    rows = [["figure", "median", "min", "max", "unit", *(_COLUMNS[k] for k in columns)]]
    for f in figures:
        derived = []
        for k in columns:
            value = f.gflop_s if k == "gflop_s" else f.extra.get(k)
            if value is None:
                derived.append("")
            elif k.startswith("util") or k.endswith("_pct") or k == "share":
                derived.append(f"{100 * value:.0f}%")
            else:
                derived.append(_fmt(value))
        rows.append([f.label, _fmt(f.median), _fmt(f.min), _fmt(f.max), f.unit, *derived])
    return _table(rows)


def ratios_table(ratios: list[Ratio]) -> list[str]:
    rows = [["figure", "catdiff", "diffusers", "catdiff / diffusers", "catdiff better when"]]
    for r in ratios:
        rows.append(
            [
                r.label,
                f"{_fmt(r.catdiff)} {r.unit}",
                f"{_fmt(r.diffusers)} {r.unit}",
                f"{r.ratio:.2f}",
                "> 1" if r.better == "higher" else "< 1",
            ]
        )
    return _table(rows)


def _reps(f: Figure) -> str:
    if f.reps == 1 and f.warmup == 0:
        return ""  # counted, not timed
    return f" ({f.reps} timed reps after {f.warmup} warm-up)"


def to_markdown(report: Report) -> str:
    m = report.machine
    lines = [
        f"# catdiff benchmark ({report.mode}), {m['date']}",
        "",
        f"- Machine: {m['cpu']}, {m['usable_cpus']} usable of {m['logical_cpus']} logical CPUs, "
        f"torch {m['torch']} ({m['cpu_capability']}), diffusers {m['diffusers']}, "
        f"lightning {m['lightning']}, Python {m['python']}",
        f"- Threads: {m['threads']} (torch.get_num_threads(), same for catdiff and diffusers); "
        f"OMP_WAIT_POLICY={m['omp_wait_policy']}; load average at start "
        f"{m['load_average_start']}, at end {m.get('load_average_end')}",
        f"- Allocator of this process: {m.get('allocator', 'not recorded')}; figures marked "
        "'own process' ran in spawned processes: catdiff's with these settings, diffusers' "
        "with the C library's defaults",
        "- Each figure: the median of the timed repetitions after untimed warm-up ones "
        "(time.perf_counter), with the min and max repetition; "
        + ", ".join(f"{k}={v}" for k, v in report.settings.items() if not isinstance(v, dict)),
        f"- Whole run: {report.wall_s:.0f} s",
        *(f"- {note}" for note in report.notes),
    ]
    for section, title in SECTIONS.items():
        figures = [f for f in report.figures if f.section == section]
        if figures:
            lines += ["", f"## {title}", "", *figures_table(figures)]
    if report.ratios:
        lines += ["", "## catdiff vs diffusers (same run, batch, precision, threads)", ""]
        lines += ratios_table(report.ratios)
    lines += ["", "## How each figure was measured", ""]
    lines += [f"- **{f.label}**: {f.how}{_reps(f)}" for f in report.figures]
    return "\n".join(lines) + "\n"


def write(report: Report, out: Path) -> tuple[Path, Path]:
    """Write ``out`` (JSON) and the markdown next to it (same name, ``.md``)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    report.machine["load_average_end"] = _load_average()
    out.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    md = out.with_suffix(".md")
    md.write_text(to_markdown(report))
    return out, md
