"""Copy what ``python -m catdiff.report`` reads from sweep folders into a folder that can be
committed: per run config.yaml, metrics.json, .hydra/*.yaml, csv/metrics.csv (the loss
history) and each eval/<tag>/{metrics.json,grid.png,zoom.png}; per sweep multirun.yaml. No
checkpoints, no samples.pt, no W&B files (runs do not outlive the machine they trained on).

    python experiments/faces/collect.py /work/runs/baseline/multirun_<time> ... out=experiments/runs/faces

Each sweep folder lands at <out>/<experiment>/<sweep folder name>/; a file over 200 KB is
refused (named, exit 1) rather than copied.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

RUN_FILES = (
    "config.yaml",
    "metrics.json",
    ".hydra/config.yaml",
    ".hydra/hydra.yaml",
    ".hydra/overrides.yaml",
    "csv/metrics.csv",
    "csv/hparams.yaml",
)
EVAL_FILES = ("metrics.json", "grid.png", "zoom.png")
LIMIT = 200_000


def collect(sweep: Path, out: Path) -> list[Path]:
    dest = out / sweep.parent.name / sweep.name
    wanted = [sweep / "multirun.yaml"]
    for run in sorted(p for p in sweep.iterdir() if (p / "config.yaml").is_file()):
        if not (run / "metrics.json").is_file():
            print(f"{run}: unfinished (no metrics.json), skipped")
            continue
        wanted += [run / f for f in RUN_FILES]
        for tag in sorted(p for p in (run / "eval").glob("*") if (p / "metrics.json").is_file()):
            wanted += [tag / f for f in EVAL_FILES]
    copied = []
    for src in wanted:
        if not src.is_file():
            continue
        if src.stat().st_size > LIMIT:
            sys.exit(f"{src}: {src.stat().st_size} bytes, over {LIMIT}: not copied")
        target = dest / src.relative_to(sweep)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
        copied.append(target)
    return copied


def main(argv: list[str]) -> None:
    out = Path("experiments/runs/faces")
    sweeps = []
    for arg in argv:
        if arg.startswith("out="):
            out = Path(arg[4:])
        else:
            sweeps.append(Path(arg))
    for sweep in sweeps:
        files = collect(sweep, out)
        size = sum(f.stat().st_size for f in files)
        print(
            f"{sweep} -> {out / sweep.parent.name / sweep.name}: {len(files)} files, {size:,} bytes"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
