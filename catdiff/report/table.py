"""The metrics a report compares: every score of the eval results becomes an :class:`Entry`,
and values share a column only when comparable: same score, space, feature extractor (each
(space, extractor) pair its own table) and settings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from catdiff.report.runs import Run

# Config keys that change what bits/dim, and what a training loss, measure.
DATA_KEYS = ("data.edges", "data.edge_blur", "data.channels", "data.image_size", "data.source")
_DIFFUSION_LEAVES = ("loss", "huber_delta", "objective", "schedule", "T", "beta_start", "beta_end")
LOSS_TARGET_KEYS = tuple(f"diffusion.{k}" for k in _DIFFUSION_LEAVES) + DATA_KEYS


@dataclass
class Metric:
    """One column of the report's tables, and the rows of its verdict."""

    key: str  # stable id
    label: str  # column header
    get: Callable[[Run], float | None]
    lower_is_better: bool | None  # None: neither (a loss, a ratio with 1 as its target)
    sensitive_to: tuple[str, ...] = ()  # config keys that make values incomparable
    se: Callable[[Run], float | None] | None = None  # per-run uncertainty, if any
    spread_name: str = "SE"  # what se is
    several_extractors: bool = False  # its space also has a column from another extractor
    table: str = ""  # the title of its table ("": the main table)
    note: str = ""  # its sentence in the table's legend
    measures: str = "values"  # what its values are, for the caveat
    fmt: str | None = None  # format of one value (None: 4 significant digits)

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
        return (
            f"the arms differ in {', '.join(keys)}, so their {self.measures} measure different "
            "things: a difference here is not by itself a difference in quality"
        )


def _final(key: str) -> Callable[[Run], float | None]:
    return lambda run: run.metrics.get(key)


# ---------------------------------------------------------------------------- eval scores
@dataclass(frozen=True)
class Entry:
    """One score of one eval result (one space), in the report's own form."""

    name: str  # the score's key: fid, kid, nll, precision, ...
    label: str
    value: Any
    space: str | None = None  # None: a score of the whole run (bits/dim)
    extractor: tuple[str, str] | None = None  # (name, sha256), for scores on its features
    settings: tuple[tuple[str, str], ...] = ()  # values with other settings never share a column
    lower_is_better: bool | None = None
    spread: Any = None
    spread_name: str = "SE"
    about: str = ""
    sensitive_to: tuple[str, ...] = ()
    measures: str = "values"
    fmt: str | None = None

    @property
    def column(self) -> tuple:
        return (self.name, self.space, self.extractor, self.settings)


def extractor_id(ev: dict[str, Any], space: str) -> tuple[str, str]:
    info = (ev.get("extractor") or {}).get(space) or {}
    return str(info.get("name") or "unknown extractor"), str(info.get("sha256") or "unknown")


FIXED_ABOUT = (
    "FID/KID: one table per feature extractor [name sha256 prefix] (each extractor "
    "belongs to one space); values from different extractors are never in one table. "
    "KID: mean over the subsets of each run, then mean ± std over seeds."
)
# The per-space keys older than the generic ``scores``, and how to read one space's value.
FIXED_KEYS: dict[str, dict[str, Any]] = {
    "fid": {"label": "FID", "lower_is_better": True, "by_extractor": True, "about": FIXED_ABOUT},
    "kid": {
        "label": "KID",
        "lower_is_better": True,
        "by_extractor": True,
        "about": FIXED_ABOUT,
        "read": lambda v: v.get("mean") if isinstance(v, dict) else None,
    },
    "detail": {
        "label": "detail ratio",
        "lower_is_better": None,
        "by_extractor": False,
        "about": (
            "detail ratio: the samples' mean squared Laplacian over the reference images' "
            "(catdiff.metrics.detail); 1 is as finely detailed as the data, below 1 smoother, "
            "above 1 noisier."
        ),
    },
}
NLL_FIELDS = ("space", "mode", "split", "sigma", "timesteps_per_image")


def _nll_entry(nll: dict[str, Any]) -> Entry:
    """Bits/dim: one value per run, comparable only within one estimator and data space."""
    data = f" (data: edges={nll['space']})" if nll.get("space") else ""
    about = (
        f"NLL: {nll.get('mode')} estimate of the variational bound on "
        f"{nll.get('n_images')} {nll.get('split')} images{data}, "
        f"{nll.get('timesteps_per_image')} timesteps per image, sigma={nll.get('sigma')}; "
        "the SE column is the mean of the runs' own standard errors (estimator noise "
        "within a run), the ± is the spread over seeds."
    )
    return Entry(
        "nll",
        "NLL bits/dim",
        nll.get("bpd"),
        settings=tuple((k, str(nll.get(k))) for k in NLL_FIELDS),
        lower_is_better=True,
        spread=nll.get("se"),
        about=about,
        sensitive_to=DATA_KEYS,
        measures="bits/dim",
    )


def entries(ev: dict[str, Any]) -> list[Entry]:
    """Every score of an eval result: the fixed keys, then bits/dim, then ``scores``."""
    out = []
    for key, desc in FIXED_KEYS.items():
        read = desc.get("read", lambda v: v)
        for space, value in (ev.get(key) or {}).items():
            extractor = extractor_id(ev, space) if desc["by_extractor"] else None
            out.append(
                Entry(
                    key,
                    desc["label"],
                    read(value),
                    space,
                    extractor,
                    lower_is_better=desc["lower_is_better"],
                    about=desc["about"],
                )
            )
    if isinstance(ev.get("nll"), dict) and ev["nll"]:
        out.append(_nll_entry(ev["nll"]))
    for name, score in (ev.get("scores") or {}).items():
        if not isinstance(score, dict):
            continue
        values = score.get("value")
        per_space = values if isinstance(values, dict) else {None: values}
        spreads = score.get("spread")
        settings = tuple((str(k), str(v)) for k, v in (score.get("settings") or {}).items())
        for space, value in per_space.items():
            by_extractor = bool(score.get("by_extractor")) and space is not None
            spread = spreads.get(space) if isinstance(spreads, dict) else spreads
            out.append(
                Entry(
                    name,
                    str(score.get("label") or name),
                    value,
                    space,
                    extractor_id(ev, space) if by_extractor else None,
                    settings,
                    score.get("lower_is_better"),
                    spread,
                    str(score.get("spread_name") or "spread"),
                    str(score.get("about") or ""),
                    fmt=score.get("format"),
                )
            )
    return out


def _space_order(column: tuple) -> tuple:
    _, space, extractor, _ = column
    return (space is not None and space != "gray", space or "", extractor or ("", ""))


def _names(labels: list[str]) -> str:
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


def _varying(settings: list[tuple[tuple[str, str], ...]]) -> list[str]:
    """The settings keys whose values differ between the given columns, in order."""
    dicts = [dict(s) for s in settings]
    keys = dict.fromkeys(k for d in dicts for k in d)
    return [k for k in keys if len({d.get(k) for d in dicts}) > 1]


def metrics_for(runs: list[Run], tag: str | None) -> list[Metric]:
    """Final losses, then a column per comparable group of each eval score (gray first)."""
    loss = {"lower_is_better": None, "sensitive_to": LOSS_TARGET_KEYS, "measures": "loss values"}
    metrics = [
        Metric("train_loss", "final train loss", _final("final/train/loss"), **loss),
        Metric("val_loss", "final val loss (EMA)", _final("final/val/loss"), **loss),
    ]
    found: dict[int, dict[tuple, Entry]] = {}  # id(run) -> column -> entry
    first: dict[tuple, Entry] = {}  # column -> its first entry, in order of appearance
    for run in runs:
        ev = run.evals.get(tag) if tag else None
        found[id(run)] = {e.column: e for e in entries(ev or {}) if e.value is not None}
        for column, entry in found[id(run)].items():
            first.setdefault(column, entry)
    names = list(dict.fromkeys(c[0] for c in first))
    columns = sorted(first, key=lambda c: (names.index(c[0]), _space_order(c)))
    extractors: dict[str | None, set] = {}  # space -> the extractors of its columns
    tables: dict[tuple, list[str]] = {}  # (space, extractor) -> the labels of its scores
    for column in columns:
        _, space, extractor, _ = column
        if extractor is not None:
            extractors.setdefault(space, set()).add(extractor)
            labels = tables.setdefault((space, extractor), [])
            if first[column].label not in labels:
                labels.append(first[column].label)
    for column in columns:
        name, space, extractor, settings = column
        entry = first[column]
        label = entry.label + (f" {space}" if space is not None else "")
        table = ""
        if extractor is not None:
            ename, sha = extractor
            label += f" [{ename} {sha[:8] if sha != 'unknown' else 'sha?'}]"
            scores = _names(tables[(space, extractor)])
            table = f"{scores}, {space} space, extractor {ename} {sha[:8]}"
        varying = _varying([c[3] for c in columns if c[0] == name])
        if varying:
            label += " [" + ", ".join(f"{k}={dict(settings).get(k)}" for k in varying) + "]"

        def get(run: Run, column=column, field="value") -> float | None:
            entry = found.get(id(run), {}).get(column)
            return getattr(entry, field) if entry else None

        has_spread = any(c.get(column) and c[column].spread is not None for c in found.values())
        metrics.append(
            Metric(
                ":".join(str(part) for part in column),
                label,
                get,
                entry.lower_is_better,
                entry.sensitive_to,
                se=(lambda run, g=get: g(run, field="spread")) if has_spread else None,
                spread_name=entry.spread_name,
                several_extractors=extractor is not None and len(extractors[space]) > 1,
                table=table,
                note=entry.about,
                measures=entry.measures,
                fmt=entry.fmt,
            )
        )
    return metrics
