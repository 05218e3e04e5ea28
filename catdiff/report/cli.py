"""``python -m catdiff.report DIR [DIR ...] [name=NAME] [out=PATH] [eval=TAG]``.

DIR: sweep or run folders, pooled. Options (conf/report.yaml): ``name`` (default: the runs'),
``out`` (default: experiments/<name>), ``eval`` (default: the tag most runs have). Writes
``<out>/REPORT.md`` and ``<out>/figures/``; ``<out>/NOTES.md`` goes under "Discussion".
"""

from __future__ import annotations

import re
import shlex
import sys
from collections import Counter
from pathlib import Path

from catdiff.errors import UserError
from catdiff.files import write_text
from catdiff.report.runs import Arm, Run, duplicate_seeds, find_runs, group_arms

FIGURES = {
    "curves": "loss_curves.png",
    "buckets": "val_loss_by_t.png",
    "samples": "samples.png",
    "zoom": "samples_zoom.png",
}


def _options() -> list[str]:
    import yaml

    from catdiff.config import conf_dir

    return list(yaml.safe_load((conf_dir() / "report.yaml").read_text()))


def parse_args(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """Folders and options: run folder names hold '=' too, so an argument is an option when its
    key is one of conf/report.yaml's, a folder when it exists."""
    from catdiff.cli import compose_config

    keys = _options()
    folders, overrides = [], []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key in keys:
            if not value:
                raise UserError(f"{key}= needs a value")
            overrides.append(arg)
        elif Path(arg).exists():
            folders.append(arg)
        elif sep and re.fullmatch(r"[A-Za-z_][\w.]*", key):
            overrides.append(arg)  # an unknown option: the parser names it
        else:
            folders.append(arg)  # find_runs says it does not exist
    cfg = compose_config("report", overrides)
    if not folders:
        raise UserError(
            "no folders given: python -m catdiff.report DIR [DIR ...] [name=NAME] [out=PATH] "
            "[eval=TAG]"
        )
    return folders, {k: str(v) for k, v in cfg.items() if v is not None}


def choose_tag(runs: list[Run], wanted: str | None, warn: list[str]) -> tuple[str | None, list]:
    """The eval tag to show, and every tag found (most common first)."""
    counts = Counter(tag for r in runs for tag in r.evals)
    found = [t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    if wanted is None:
        if not found:
            return None, []
        tag = found[0]
    else:
        tag = wanted
        if tag not in counts:
            raise UserError(
                f"eval={tag}: no run has eval/{tag}/metrics.json (tags found: "
                f"{', '.join(found) or 'none'})"
            )
    missing = [r for r in runs if tag not in r.evals]
    for run in missing:
        warn.append(f"{run.path}: no eval/{tag}/metrics.json, shown as '-'")
    settings = {
        tuple(str(r.evals[tag].get(k)) for k in ("sampler", "steps", "n", "seed", "weights"))
        for r in runs
        if tag in r.evals
    }
    if len(settings) > 1:
        warn.append(
            f"eval/{tag}: the runs were evaluated with different settings "
            f"(sampler, steps, n, seed, weights: {sorted(settings)})"
        )
    return tag, found


def count_parameters(arms: list[Arm]) -> dict[str, int | None]:
    """Parameters of each arm's UNet, built on the meta device; None when it cannot be."""
    out: dict[str, int | None] = {}
    for arm in arms:
        model = dict(arm.runs[0].config.get("model") or {})
        target = model.pop("_target_", None)
        out[arm.label] = None
        if target not in ("catdiff.models.UNet", "catdiff.models.unet.UNet"):
            continue
        try:
            import torch

            from catdiff.models import UNet, count_parameters

            with torch.device("meta"):
                out[arm.label] = int(count_parameters(UNet(**model)))
        except Exception:  # an older config the current UNet does not accept
            out[arm.label] = None
    return out


def make_report(argv: list[str]) -> Path:
    from catdiff.report import figures
    from catdiff.report.markdown import Report, render, shown
    from catdiff.report.table import metrics_for

    folders, options = parse_args(argv)
    warn: list[str] = []
    sources = find_runs(folders, warn)
    runs = [r for s in sources for r in s.runs]
    names = list(dict.fromkeys(r.name for r in runs))
    name = options.get("name")
    if "out" in options:
        out = Path(options["out"])
    elif name or len(names) == 1:
        out = Path("experiments") / (name or names[0])
    else:
        raise UserError(
            f"the runs have different names ({', '.join(names)}): pass out=PATH (or name=NAME)"
        )
    name = name or (names[0] if len(names) == 1 else out.name)

    arms, differing = group_arms(runs)
    warn += duplicate_seeds(arms)
    tag, tags_found = choose_tag(runs, options.get("eval"), warn)
    metrics = metrics_for(runs, tag)

    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    for file in FIGURES.values():  # no stale figure from an earlier report
        (fig_dir / file).unlink(missing_ok=True)
    made = {}
    makers = {
        "curves": lambda p: figures.loss_curves(arms, p),
        "buckets": lambda p: figures.bucket_losses(arms, p),
        "samples": lambda p: figures.sample_grids(arms, tag, p) if tag else None,
        "zoom": lambda p: figures.zoom_grids(arms, tag, p) if tag else None,
    }
    for key, make in makers.items():
        caption = make(fig_dir / FIGURES[key])
        if caption:
            made[key] = (f"figures/{FIGURES[key]}", caption)

    words = ["python", "-m", "catdiff.report", *folders]
    words += [f"name={name}", f"out={shown(out)}"] + ([f"eval={tag}"] if tag else [])
    notes_path = out / "NOTES.md"
    report = Report(
        name=name,
        out=out,
        sources=sources,
        arms=arms,
        differing=differing,
        tag=tag,
        tags_found=tags_found,
        metrics=metrics,
        figures=made,
        command=" ".join(shlex.quote(w) for w in words),
        warnings=warn,
        notes=notes_path.read_text(errors="replace") if notes_path.is_file() else None,
        params=count_parameters(arms),
    )
    path = out / "REPORT.md"
    write_text(path, render(report))
    for line in warn:
        print(f"warning: {line}", file=sys.stderr)
    arms_text = ", ".join(f"{a.label} ({len(a.runs)})" for a in arms)
    print(f"{len(runs)} runs, arms: {arms_text}; wrote {path} and {len(made)} figures")
    return path


def main(argv: list[str] | None = None) -> None:
    try:
        make_report(sys.argv[1:] if argv is None else argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
