"""``python -m catdiff.vs_peer [out=experiments/vs_diffusers] [runs=DIR] [steps=6000] ...``
(``make vs-peer``): the whole comparison, resumable at every stage.

1. trains the peer (:mod:`catdiff.vs_peer.peer`) and catdiff's ``experiment=recommended``
   side by side, one thread each, on the same training split, to the same images seen
   (``steps`` x 64), both snapshotting every ``snapshot_every`` steps;
2. scores every snapshot (:mod:`catdiff.vs_peer.score`): ``n`` samples per curve point and
   ``final_n`` at the end, once per seed of ``final_seeds``, KID/FID on the catdiff
   extractor, the copying check;
3. writes ``out/REPORT.md`` and its figures (:mod:`catdiff.vs_peer.report`).

Run it again after an interruption: finished runs and scored snapshots are kept, a killed
training resumes from its last save. ``train=false`` only scores and reports.
On this 2-core CPU the default budget takes about 4.5 hours (the peer is the long pole: 3 h of
training on one thread beside catdiff, then about 55 min of DDIM-50 sampling to score it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from catdiff.errors import UserError
from catdiff.vs_peer.cli import one_line_errors, parse

OPTIONS: dict[str, Any] = {
    "out": "experiments/vs_diffusers",
    "runs": None,  # default: <CATDIFF_OUTPUTS or outputs>/vs_peer
    "steps": 6000,
    "snapshot_every": 750,
    "n": 500,
    "final_n": 1000,
    "final_seeds": (0, 1, 2),  # the final snapshots are sampled at each seed, and averaged
    "sampler": "dpm_solver",
    "sampler_steps": 20,
    "train": True,
    "extractor_steps": 0,  # 0: the catdiff extractor's default training (tests use fewer)
    "data": "catfaces",
    "data_root": None,
}


def train_commands(opts: dict[str, Any]) -> dict[str, list[str]]:
    runs = Path(opts["runs"])
    root = opts["data_root"]
    peer = [
        "catdiff.vs_peer.peer",
        f"out={runs / 'peer'}",
        f"steps={opts['steps']}",
        f"snapshot_every={opts['snapshot_every']}",
        "threads=1",
        f"data={opts['data']}",
    ] + ([f"data_root={root}"] if root else [])
    ours = [
        "catdiff.train",
        "experiment=recommended",
        f"data={opts['data']}",
        f"hydra.run.dir={runs / 'catdiff'}",
        f"trainer.max_steps={opts['steps']}",
        f"callbacks.snapshots.every_n_steps={opts['snapshot_every']}",
        f"trainer.val_check_interval={min(1500, opts['steps'])}",
        "logger=[wandb,csv]",
    ] + ([f"data.root={root}"] if root else [])
    return {"peer": peer, "catdiff": ours}


def train_both(opts: dict[str, Any]) -> None:
    """Both trainings side by side, one thread each; a finished one returns at once."""
    runs = Path(opts["runs"])
    # At these small convolutions two 1-thread processes get more done on 2 cores than one
    # 2-thread process, and the two recipes share the machine equally.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    procs = {}
    for name, cmd in train_commands(opts).items():
        log = runs / f"{name}.log"
        print(f"training {name}: python -m {' '.join(cmd)}  (log: {log})")
        with log.open("a") as f:
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", *cmd], env=env, stdout=f, stderr=f
            )
    failed = [name for name, p in procs.items() if p.wait() != 0]
    if failed:
        raise UserError(f"training {', '.join(failed)} failed: see {runs}/<name>.log")


@one_line_errors
def main(argv: list[str] | None = None) -> None:
    from catdiff.vs_peer import peer
    from catdiff.vs_peer.report import write_report
    from catdiff.vs_peer.score import OURS, PEER, Scorer, score_runs

    opts = parse(argv, OPTIONS, "catdiff.vs_peer")
    opts["runs"] = opts["runs"] or str(
        Path(os.environ.get("CATDIFF_OUTPUTS", "outputs")) / "vs_peer"
    )
    runs = Path(opts["runs"])
    runs.mkdir(parents=True, exist_ok=True)
    if opts["train"]:
        train_both(opts)
    scorer = Scorer.for_data(opts["data"], opts["data_root"], opts["extractor_steps"])
    score_runs(
        {PEER: runs / "peer", OURS: runs / "catdiff"},
        runs / "scores",
        scorer,
        n=opts["n"],
        final_n=opts["final_n"],
        sampler=opts["sampler"],
        steps=opts["sampler_steps"],
        final_step=opts["steps"],
        final_seeds=opts["final_seeds"],
    )
    out = Path(opts["out"])
    setup = out / "SETUP.md"
    report = write_report(
        runs / "scores" / "scores.jsonl",
        out,
        scorer.train,
        setup.read_text() if setup.is_file() else "",
        budget=opts["steps"] * peer.RECIPE["batch_size"],
    )
    print(f"report: {report}")


if __name__ == "__main__":
    main()
