"""The metrics a report compares, and which runs' values may share a column.

FID and KID are only comparable when computed in the same space (gray samples, or Sobel
edges of samples) with the same feature extractor (same weights, by sha256): each
(space, extractor) pair is its own column and is never averaged or tested with another.
Bits/dim are grouped by how they were estimated (mode, split, sigma, timesteps per image).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from catdiff.report.runs import Run

# Config keys that change what a training loss measures: if arms differ in one, their loss
# values are on different scales (not a quality comparison).
LOSS_TARGET_KEYS = (
    "diffusion.loss",
    "diffusion.huber_delta",
    "diffusion.objective",
    "diffusion.schedule",
    "diffusion.T",
    "diffusion.beta_start",
    "diffusion.beta_end",
    "data.edges",
    "data.edge_blur",
    "data.channels",
    "data.image_size",
    "data.source",
)
# ... and those that change what bits/dim are measured on.
DATA_KEYS = ("data.edges", "data.edge_blur", "data.channels", "data.image_size", "data.source")


@dataclass
class Metric:
    key: str  # stable id
    label: str  # column header
    get: Callable[[Run], float | None]
    quality: bool  # lower is better and comparable across training targets (FID, KID, NLL)
    sensitive_to: tuple[str, ...] = ()  # config keys that make values incomparable
    se: Callable[[Run], float | None] | None = None  # per-run standard error, if any
    several_extractors: bool = False  # its space also has a column from another extractor

    def values(self, runs: list[Run]) -> list[float]:
        out = []
        for run in runs:
            value = self.get(run)
            if isinstance(value, int | float) and not isinstance(value, bool):
                out.append(float(value))
        return out

    def caveat(self, differing: list[str]) -> str | None:
        keys = [k for k in differing if k in self.sensitive_to]
        if not keys:
            return None
        what = "loss values" if not self.quality else "bits/dim"
        return (
            f"the arms differ in {', '.join(keys)}, so their {what} measure different things: "
            "a difference here is not by itself a difference in quality"
        )


def _final(key: str) -> Callable[[Run], float | None]:
    return lambda run: run.metrics.get(key)


def _eval(tag: str | None, *path: str) -> Callable[[Run], Any]:
    def get(run: Run) -> Any:
        node: Any = run.evals.get(tag) if tag else None
        for part in path:
            if not isinstance(node, dict):
                return None
            node = node.get(part)
        return node

    return get


def extractor_id(ev: dict[str, Any], space: str) -> tuple[str, str]:
    info = (ev.get("extractor") or {}).get(space) or {}
    return str(info.get("name") or "unknown extractor"), str(info.get("sha256") or "unknown")


def _extractor_getter(tag: str, family: str, space: str, name: str, sha: str, kid: bool):
    def get(run: Run) -> float | None:
        ev = run.evals.get(tag)
        if not ev or extractor_id(ev, space) != (name, sha):
            return None
        value = (ev.get(family) or {}).get(space)
        if kid:
            return value.get("mean") if isinstance(value, dict) else None
        return value

    return get


NLL_FIELDS = ("space", "mode", "split", "sigma", "timesteps_per_image")


def _nll_group(ev: dict[str, Any]) -> tuple:
    """What makes two bits/dim comparable: the data they are measured on and the estimator."""
    nll = ev.get("nll") or {}
    return tuple(str(nll.get(k)) for k in NLL_FIELDS)


def metrics_for(runs: list[Run], tag: str | None) -> list[Metric]:
    """The table's columns: final losses, then FID/KID per (space, extractor), then NLL."""
    metrics = [
        Metric(
            "train_loss",
            "final train loss",
            _final("final/train/loss"),
            False,
            LOSS_TARGET_KEYS,
        ),
        Metric(
            "val_loss",
            "final val loss (EMA)",
            _final("final/val/loss"),
            False,
            LOSS_TARGET_KEYS,
        ),
    ]
    evals = [r.evals[tag] for r in runs if tag and tag in r.evals]
    groups: dict[tuple[str, str, str], None] = {}
    for ev in evals:
        for family in ("fid", "kid"):
            for space in ev.get(family) or {}:
                groups[(space, *extractor_id(ev, space))] = None
    spaces = sorted(groups, key=lambda g: (g[0] != "gray", g))
    several = {s for s, _, _ in spaces if sum(g[0] == s for g in spaces) > 1}
    for family, kid in (("fid", False), ("kid", True)):
        for space, name, sha in spaces:
            if not any((ev.get(family) or {}).get(space) is not None for ev in evals):
                continue
            short = sha[:8] if sha != "unknown" else "sha?"
            label = f"{family.upper()} {space} [{name} {short}]"
            metrics.append(
                Metric(
                    f"{family}:{space}:{sha}",
                    label,
                    _extractor_getter(tag, family, space, name, sha, kid),
                    True,
                    several_extractors=space in several,
                )
            )
    nll_groups = list(dict.fromkeys(_nll_group(ev) for ev in evals if ev.get("nll")))
    varying = [i for i in range(len(NLL_FIELDS)) if len({g[i] for g in nll_groups}) > 1]
    for group in nll_groups:
        label = "NLL bits/dim"
        if varying:
            label += " [" + ", ".join(f"{NLL_FIELDS[i]}={group[i]}" for i in varying) + "]"

        def get(run: Run, group=group, key="bpd") -> float | None:
            ev = run.evals.get(tag) if tag else None
            if not ev or not ev.get("nll") or _nll_group(ev) != group:
                return None
            return ev["nll"].get(key)

        metrics.append(
            Metric(
                f"nll:{'|'.join(group)}",
                label,
                get,
                True,
                DATA_KEYS,
                se=lambda run, group=group, g=get: g(run, group, "se"),
            )
        )
    return metrics


def nll_settings(runs: list[Run], tag: str | None) -> list[dict[str, Any]]:
    """The distinct NLL estimation settings (for the table's legend)."""
    seen: dict[tuple, dict[str, Any]] = {}
    for run in runs:
        ev = run.evals.get(tag) if tag else None
        if ev and ev.get("nll"):
            seen.setdefault(_nll_group(ev), ev["nll"])
    return list(seen.values())
