"""Reading run folders (``config.yaml``) and sweep folders (of run folders), and grouping runs
into arms by the config values that differ between them (seeds are replicates)."""

from __future__ import annotations

import csv
import json
import math
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from catdiff.errors import UserError

NOT_A_RUN = "not a run folder (no config.yaml) nor a sweep folder (no run folders inside)"

# Config keys that never define an arm, by the last component of the key, or by prefix.
IGNORED_LEAVES = {
    "seed",
    "name",
    "ckpt_path",
    "save_dir",
    "dirpath",
    "default_root_dir",
    "root",
    "data_dir",
    "cache_dir",
    "run_dir",
    "output_root",
}
IGNORED_PREFIXES = ("paths.", "logger.", "callbacks.progress_bar.")
# Overrides that are not choices of the experiment (folders, resuming).
IGNORED_OVERRIDES = IGNORED_LEAVES | {"experiment", "logger", "paths"}


@dataclass
class Run:
    """One training run folder and everything the report reads from it."""

    path: Path
    source: Path  # the folder given on the command line that led here
    config: dict[str, Any]
    overrides: list[str]  # .hydra/overrides.yaml (the task overrides of this member)
    hydra_overrides: list[str]  # hydra.overrides.hydra of .hydra/hydra.yaml
    metrics: dict[str, Any]  # metrics.json
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    history_from: str = "csv"
    evals: dict[str, dict[str, Any]] = field(default_factory=dict)  # tag -> eval metrics.json

    @property
    def seed(self) -> int | None:
        return self.config.get("seed")

    @property
    def name(self) -> str:
        return str(self.config.get("name", "?"))

    @property
    def steps(self) -> int | None:
        return self.metrics.get("global_step")

    @property
    def images_per_step(self) -> int | None:
        batch = (self.config.get("data") or {}).get("batch_size")
        return None if batch is None else batch * int(self.metrics.get("world_size") or 1)

    @property
    def images_seen(self) -> int | None:
        if self.steps is None or self.images_per_step is None:
            return None
        return int(self.steps) * self.images_per_step

    def eval_dir(self, tag: str) -> Path:
        return self.path / "eval" / tag


@dataclass
class Source:
    """A folder given on the command line: a sweep folder, or a single run folder."""

    path: Path
    kind: str  # "sweep" or "run"
    runs: list[Run]
    members: int  # run folders it holds (some may be skipped)
    multirun: dict[str, Any] | None = None  # the sweep's multirun.yaml


@dataclass
class Arm:
    """Runs that share every config value except the seed (and paths, names, loggers)."""

    label: str
    values: dict[str, Any]  # the naming keys and their values
    runs: list[Run]

    @property
    def seeds(self) -> list[Any]:
        return [r.seed for r in self.runs]


# ---------------------------------------------------------------------------- reading files
def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: cannot read it as YAML ({first})") from None


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot read it as JSON ({e})") from None


def _is_run(path: Path) -> bool:
    return (path / "config.yaml").is_file()


def _job_order(path: Path) -> tuple[int, str]:
    """Hydra names sweep members ``<job num>_<overrides>``: sort by the number."""
    match = re.match(r"(\d+)_", path.name)
    return (int(match.group(1)) if match else 1 << 30, path.name)


def _csv_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a CSV log; bytes that are not UTF-8 become U+FFFD."""
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        return list(csv.DictReader(line.replace("\0", "") for line in f))


def read_csv_history(path: Path) -> dict[str, list[tuple[int, float]]]:
    """Lightning's CSV log -> {metric: [(step, value), ...]}; a step logged twice keeps the last."""
    series: dict[str, dict[int, float]] = {}
    try:
        rows = _csv_rows(path)
    except (OSError, csv.Error) as e:
        raise UserError(f"{path}: cannot read it as CSV ({e})") from None
    for row in rows:
        try:
            step = int(float(row.get("step") or ""))
        except ValueError:
            continue
        for key, value in row.items():
            if key in ("step", "epoch") or key is None or value in (None, ""):
                continue
            try:
                series.setdefault(key, {})[step] = float(value)
            except ValueError:
                continue
    return {k: sorted(v.items()) for k, v in series.items()}


def wandb_records(path: Path) -> Iterator[Any]:
    """The protobuf records of an offline W&B run file: LevelDB-style 32 KiB blocks of chunks
    with a 7-byte header (crc32, length, type)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise UserError(f"{path}: not a W&B run file")
    i, block, pending = 7, 32768, b""
    while i < len(data):
        if block - i % block < 7:  # too little room for a header: the block is padded
            i += block - i % block
            continue
        _, length, kind = struct.unpack("<IHB", data[i : i + 7])
        chunk, i = data[i + 7 : i + 7 + length], i + 7 + length
        if kind == 0:  # zero padding
            continue
        pending += chunk
        if kind in (1, 4):  # FULL, or LAST of FIRST/MIDDLE/LAST
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def read_wandb_history(path: Path) -> dict[str, list[tuple[int, float]]]:
    """The scalar history of an offline W&B run file on the trainer/global_step axis."""
    series: dict[str, dict[int, float]] = {}
    for record in wandb_records(path):
        if record.WhichOneof("record_type") != "history":
            continue
        row = {}
        for item in record.history.item:
            key = item.key or "/".join(item.nested_key)
            try:
                row[key] = json.loads(item.value_json)
            except ValueError:
                continue
        step = row.get("trainer/global_step")
        if not isinstance(step, int | float):
            continue
        for key, value in row.items():
            if key.startswith("_") or key in ("trainer/global_step", "epoch"):
                continue
            if isinstance(value, int | float) and not isinstance(value, bool):
                series.setdefault(key, {})[int(step)] = float(value)
    return {k: sorted(v.items()) for k, v in series.items()}


def read_history(run_dir: Path) -> tuple[dict[str, list[tuple[int, float]]], str]:
    """The run's logged metrics: ``csv/metrics.csv``, else its W&B offline file."""
    csv_path = run_dir / "csv" / "metrics.csv"
    if csv_path.is_file():
        return read_csv_history(csv_path), "csv"
    wandb_files = sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    if wandb_files:
        try:
            return read_wandb_history(wandb_files[-1]), "wandb"
        except ImportError:
            pass
    raise UserError(
        f"{run_dir}: no loss history (no csv/metrics.csv and no readable W&B offline file): "
        "train with logger=[wandb,csv]"
    )


def read_evals(run_dir: Path, warn: list[str]) -> dict[str, dict[str, Any]]:
    evals = {}
    for path in sorted((run_dir / "eval").glob("*/metrics.json")):
        data = _load_json(path)
        if not isinstance(data, dict) or "catdiff_eval" not in data:
            warn.append(f"{path}: not a catdiff.evaluate result (no 'catdiff_eval'), ignored")
            continue
        evals[path.parent.name] = data
    return evals


def read_run(path: Path, source: Path, warn: list[str]) -> Run | None:
    """A run folder, or None (with a warning) when it has no metrics.json (unfinished)."""
    config = _load_yaml(path / "config.yaml")
    if not isinstance(config, dict):
        raise UserError(f"{path / 'config.yaml'}: not a catdiff config (not a mapping)")
    if not (path / "metrics.json").is_file():
        warn.append(f"{path}: no metrics.json (training unfinished or failed), skipped")
        return None
    metrics = _load_json(path / "metrics.json")
    overrides_file, hydra_file = path / ".hydra" / "overrides.yaml", path / ".hydra" / "hydra.yaml"
    overrides = _load_yaml(overrides_file) if overrides_file.is_file() else []
    hydra_cfg = (_load_yaml(hydra_file) or {}).get("hydra", {}) if hydra_file.is_file() else {}
    hydra_overrides = (hydra_cfg.get("overrides") or {}).get("hydra") or []
    history, history_from = read_history(path)
    return Run(
        path=path,
        source=source,
        config=config,
        overrides=[str(o) for o in overrides or []],
        hydra_overrides=[str(o) for o in hydra_overrides],
        metrics=metrics,
        history=history,
        history_from=history_from,
        evals=read_evals(path, warn),
    )


def find_runs(folders: list[str | Path], warn: list[str]) -> list[Source]:
    """The runs of each folder given, in order; a run reached twice is read once."""
    sources, seen = [], set()
    for folder in folders:
        path = Path(folder)
        if not path.exists():
            raise UserError(f"{path}: no such folder")
        if not path.is_dir():
            raise UserError(f"{path}: {NOT_A_RUN}")
        if _is_run(path):
            members, kind = [path], "run"
        else:
            members = sorted((p for p in path.iterdir() if _is_run(p)), key=_job_order)
            kind = "sweep"
            if not members:
                deeper = sorted(p.parent for p in path.glob("*/*/config.yaml"))
                hint = f": it holds sweep folders, pass them, e.g. {deeper[0]}" if deeper else ""
                raise UserError(f"{path}: {NOT_A_RUN}{hint}")
        runs = []
        for member in members:
            key = member.resolve()
            if key in seen:
                warn.append(f"{member}: given twice, read once")
                continue
            seen.add(key)
            run = read_run(member, path, warn)
            if run is not None:
                runs.append(run)
        multirun = None
        if kind == "sweep" and (path / "multirun.yaml").is_file():
            multirun = _load_yaml(path / "multirun.yaml")
        sources.append(Source(path, kind, runs, len(members), multirun))
    if not any(s.runs for s in sources):
        raise UserError(
            f"no finished runs in {', '.join(str(f) for f in folders)} (no metrics.json)"
        )
    return sources


# ---------------------------------------------------------------------------- arms
def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Nested config -> {"a.b.c": value}; lists become tuples (one value each)."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    if isinstance(node, list):
        return {prefix[:-1]: tuple(_hashable(v) for v in node)}
    return {prefix[:-1]: node}


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


def ignored(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in IGNORED_LEAVES or key.startswith(IGNORED_PREFIXES)


def _override_pairs(run: Run) -> dict[str, str]:
    pairs = {}
    for item in run.overrides:
        key, sep, value = item.lstrip("+~").partition("=")
        if sep and key.rsplit(".", 1)[-1] not in IGNORED_OVERRIDES and key not in IGNORED_OVERRIDES:
            pairs[key] = value
    return pairs


def format_value(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return repr(value)
    return str(value)


def group_arms(runs: list[Run]) -> tuple[list[Arm], list[str]]:
    """(arms in order of first appearance, the config keys that differ between arms).

    Arms are named by as few keys as tell them apart: command-line keys first (``loss=l2``),
    then config groups (``model=unet_small``), then other differing keys, each by its shortest
    unambiguous dotted suffix.
    """
    flat = [{k: v for k, v in flatten(r.config).items() if not ignored(k)} for r in runs]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    differing = [k for k in keys if len({repr(f.get(k, "<absent>")) for f in flat}) > 1]
    signature = [tuple(repr(f.get(k, "<absent>")) for k in differing) for f in flat]
    groups: dict[tuple, list[int]] = {}
    for i, sig in enumerate(signature):
        groups.setdefault(sig, []).append(i)
    members = list(groups.values())  # in order of first appearance
    if len(members) == 1:
        label = runs[0].name
        return [Arm(label, {}, sorted(runs, key=_seed_key))], []

    # Naming candidates: value of key per run; a candidate must be constant within each arm.
    overrides = [_override_pairs(r) for r in runs]
    candidates: list[tuple[str, list[Any]]] = []
    for key in dict.fromkeys(k for o in overrides for k in o):
        if key in differing:  # a config key set on the command line
            candidates.append((key, [f.get(key) for f in flat]))
    for key in dict.fromkeys(k for o in overrides for k in o):
        if "." not in key and key not in differing:  # a config group choice: model=unet_small
            candidates.append((key, [o.get(key, "default") for o in overrides]))
    for key in differing:
        candidates.append((key, [f.get(key) for f in flat]))
    chosen: list[tuple[str, list[Any]]] = []
    seen_keys = set()
    for key, values in candidates:
        if key in seen_keys or any(len({repr(values[i]) for i in m}) > 1 for m in members):
            continue
        seen_keys.add(key)
        before = len({tuple(repr(v[m[0]]) for _, v in chosen) for m in members})
        after = len({tuple(repr(v[m[0]]) for _, v in chosen + [(key, values)]) for m in members})
        if after > before:
            chosen.append((key, values))
        if after == len(members):
            break
    short = _short_names([k for k, _ in chosen])
    arms = []
    for m in members:
        values = {k: v[m[0]] for k, v in chosen}
        label = ", ".join(f"{short[k]}={format_value(v)}" for k, v in values.items())
        arms.append(Arm(label, values, sorted((runs[i] for i in m), key=_seed_key)))
    return arms, differing


def _seed_key(run: Run) -> tuple:
    return (not isinstance(run.seed, int), run.seed if isinstance(run.seed, int) else 0)


def _short_names(keys: list[str]) -> dict[str, str]:
    """Shortest dotted suffix of each key that no other key ends with."""
    out = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            suffix = ".".join(parts[-n:])
            if not any(o != key and (o == suffix or o.endswith("." + suffix)) for o in keys):
                out[key] = suffix
                break
        else:
            out[key] = key
    return out


def duplicate_seeds(arms: list[Arm]) -> list[str]:
    """Warnings for arms holding two runs with the same seed (e.g. the same control twice)."""
    out = []
    for arm in arms:
        seen: dict[Any, Run] = {}
        for run in arm.runs:
            if run.seed in seen:
                out.append(
                    f"arm {arm.label}: seed {run.seed} twice ({seen[run.seed].path} and "
                    f"{run.path}): both counted as replicates"
                )
            seen.setdefault(run.seed, run)
    return out
