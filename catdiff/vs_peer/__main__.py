"""``python -m catdiff.vs_peer [out=experiments/vs_diffusers] [runs=DIR] [steps=6000] ...``
(``make vs-peer``): the whole comparison, resumable at every stage.

1. trains the peer (:mod:`catdiff.vs_peer.peer`) and catdiff's ``experiment=recommended``
   side by side, one thread each, on the same training split, to the same images seen
   (``steps`` x 64), both snapshotting every ``snapshot_every`` steps;
2. scores every snapshot (:mod:`catdiff.vs_peer.score`): ``n`` samples per curve point and
   ``final_n`` at the end, KID/FID on the catdiff extractor, the copying check;
3. writes ``out/REPORT.md`` and its figures (:mod:`catdiff.vs_peer.report`).

Run it again after an interruption: finished runs and scored snapshots are kept, a killed
training resumes from its last save. ``train=false`` only scores and reports.
On this 2-core CPU the default budget takes about 3 hours (the peer is the long pole).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from catdiff.errors import UserError

DEFAULTS = {
    "out": "experiments/vs_diffusers",
    "runs": None,  # default: <CATDIFF_OUTPUTS or outputs>/vs_peer
    "steps": "6000",
    "snapshot_every": "750",
    "n": "500",
    "final_n": "1000",
    "sampler": "dpm_solver",
    "sampler_steps": "20",
    "train": "true",
    "extractor_steps": "0",  # 0: the catdiff extractor's default training (tests use fewer)
    "data": "catfaces",
    "data_root": None,
}


def parse(argv: list[str]) -> dict[str, str | None]:
    opts = dict(DEFAULTS)
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in DEFAULTS:
            raise UserError(
                f"{arg!r}: options are key=value with key in {', '.join(DEFAULTS)} (catdiff.vs_peer)"
            )
        opts[key] = value
    if opts["runs"] is None:
        opts["runs"] = str(Path(os.environ.get("CATDIFF_OUTPUTS", "outputs")) / "vs_peer")
    return opts


def train_commands(opts: dict[str, str | None]) -> dict[str, list[str]]:
    runs = Path(opts["runs"])
    data = [f"data={opts['data']}"] + (
        [f"data_root={opts['data_root']}"] if opts["data_root"] else []
    )
    peer = [
        "catdiff.vs_peer.peer",
        f"out={runs / 'peer'}",
        f"steps={opts['steps']}",
        f"snapshot_every={opts['snapshot_every']}",
        "threads=1",
        *data,
    ]
    ours = [
        "catdiff.train",
        "experiment=recommended",
        f"data={opts['data']}",
        f"hydra.run.dir={runs / 'catdiff'}",
        f"trainer.max_steps={opts['steps']}",
        f"callbacks.snapshots.every_n_steps={opts['snapshot_every']}",
        f"trainer.val_check_interval={min(1500, int(opts['steps']))}",
        "logger=[wandb,csv]",
    ] + ([f"data.root={opts['data_root']}"] if opts["data_root"] else [])
    return {"peer": peer, "catdiff": ours}


def main(argv: list[str] | None = None) -> None:
    try:
        opts = parse(sys.argv[1:] if argv is None else argv)
    except UserError as e:
        raise SystemExit(f"error: {e}") from None
    runs = Path(opts["runs"])
    runs.mkdir(parents=True, exist_ok=True)
    if opts["train"] == "true":
        # One thread each: at these small convolutions two 1-thread processes get more done on
        # 2 cores than one 2-thread process, and the two recipes share the machine equally.
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
        procs = {}
        for name, cmd in train_commands(opts).items():
            log = (runs / f"{name}.log").open("a")
            print(f"training {name}: python -m {' '.join(cmd)}  (log: {runs / name}.log)")
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", *cmd], env=env, stdout=log, stderr=log
            )
        failed = [name for name, p in procs.items() if p.wait() != 0]
        if failed:
            raise SystemExit(f"error: training {', '.join(failed)} failed: see {runs}/<name>.log")
    from catdiff.vs_peer import report, score

    scores = runs / "scores"
    score.main(
        [
            f"peer={runs / 'peer'}",
            f"ours={runs / 'catdiff'}",
            f"out={scores}",
            f"n={opts['n']}",
            f"final_n={opts['final_n']}",
            f"sampler={opts['sampler']}",
            f"steps={opts['sampler_steps']}",
            f"data={opts['data']}",
            f"extractor_steps={opts['extractor_steps']}",
            f"final_step={opts['steps']}",
        ]
        + ([f"data_root={opts['data_root']}"] if opts["data_root"] else [])
    )
    setup = Path(opts["out"]) / "SETUP.md"
    report.main(
        [f"scores={scores / 'scores.jsonl'}", f"out={opts['out']}", f"data={opts['data']}"]
        + ([f"setup={setup}"] if setup.is_file() else [])
        + ([f"data_root={opts['data_root']}"] if opts["data_root"] else [])
    )


if __name__ == "__main__":
    main()
