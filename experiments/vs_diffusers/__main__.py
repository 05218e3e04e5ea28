"""``python -m experiments.vs_diffusers [out=experiments/vs_diffusers] [runs=DIR] [steps=6000] ...``
(``make vs-peer``): the whole comparison, resumable at every stage.

1. trains the peer (:mod:`experiments.vs_diffusers.peer`) and catdiff's ``experiment=recommended``
   side by side, one thread each, on the same training split, to the same images seen
   (``steps`` x 64), both snapshotting every ``snapshot_every`` steps; then catdiff's recipe
   again at each of ``training_seeds`` and the peer's at each of ``peer_seeds`` (two at a
   time), whose finals are scored too;
2. scores every snapshot (:mod:`experiments.vs_diffusers.score`): ``n`` samples per curve point and
   ``final_n`` at the end, once per seed of ``final_seeds``, KID/FID on the catdiff
   extractor, the copying check;
3. writes ``out/REPORT.md`` and its figures (:mod:`experiments.vs_diffusers.report`).

Run it again after an interruption: finished runs and scored snapshots are kept, a killed
training resumes from its last save. ``train=false`` only scores and reports.
On this 2-core CPU the default budget takes about 6 hours (the peer is the long pole: 3 h of
training on one thread beside catdiff, then about 55 min of DDIM-50 sampling to score it). The
extra training seeds add about 4.5 h: catdiff's seeds 1 and 2 side by side took 47-50 min here;
then catdiff's seed 3 runs beside the peer's seed 1, which takes as long as the peer's first
run (3 h on one thread); each catdiff final takes about 3.5 min to score at three sampling seeds,
the peer's about 25 (its seed-1 rerun's took 24 min here).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from catdiff.errors import UserError
from experiments import child_env
from experiments.vs_diffusers.cli import one_line_errors, parse

OPTIONS: dict[str, Any] = {
    "out": "experiments/vs_diffusers",
    "runs": None,  # default: <CATDIFF_OUTPUTS or outputs>/vs_peer
    "steps": 6000,
    "snapshot_every": 750,
    "n": 500,
    "final_n": 1000,
    "final_seeds": (0, 1, 2),  # the final snapshots are sampled at each seed, and averaged
    # catdiff's recipe trained again at these `seed=`s (two at a time, one thread each, after
    # the pair): their finals give the recipe's KID over training seeds. Empty: none.
    "training_seeds": (1, 2, 3),
    # The peer's recipe trained again at these seeds, beside catdiff's extra seeds, so that the
    # ratio is one of means on both sides. Empty: none.
    "peer_seeds": (1,),
    # catdiff's sampler and its steps; unset: conf/experiment/recommended.yaml's
    "sampler": None,
    "sampler_steps": 0,
    "train": True,
    "extractor_steps": 0,  # 0: the catdiff extractor's default training (tests use fewer)
    "data": "catfaces",
    "data_root": None,
}


def seed_run(runs: Path, seed: int, name: str = "catdiff") -> Path:
    """The folder of a recipe (``catdiff`` or ``peer``) trained at training ``seed`` (not the
    main run's)."""
    return runs / f"{name}_seed{seed}"


def train_commands(opts: dict[str, Any]) -> dict[str, list[str]]:
    runs = Path(opts["runs"])
    return {
        "peer": peer_command(opts, runs / "peer"),
        "catdiff": ours_command(opts, runs / "catdiff"),
    }


def peer_command(opts: dict[str, Any], folder: Path, seed: int | None = None) -> list[str]:
    """The peer's training into ``folder`` (at training ``seed`` if given), on one thread."""
    root = opts["data_root"]
    return (
        [
            "experiments.vs_diffusers.peer",
            f"out={folder}",
            f"steps={opts['steps']}",
            f"snapshot_every={opts['snapshot_every']}",
            "threads=1",
            f"data={opts['data']}",
        ]
        + ([f"data_root={root}"] if root else [])
        + ([f"seed={seed}"] if seed is not None else [])
    )


def ours_command(opts: dict[str, Any], folder: Path, seed: int | None = None) -> list[str]:
    """catdiff's ``experiment=recommended`` into ``folder`` (at training ``seed`` if given)."""
    root = opts["data_root"]
    return (
        [
            "catdiff.train",
            "experiment=recommended",
            f"data={opts['data']}",
            f"hydra.run.dir={folder}",
            f"trainer.max_steps={opts['steps']}",
            f"callbacks.snapshots.every_n_steps={opts['snapshot_every']}",
            f"trainer.val_check_interval={min(1500, opts['steps'])}",
            "logger=[wandb,csv]",
        ]
        + ([f"data.root={root}"] if root else [])
        + ([f"seed={seed}"] if seed is not None else [])
    )


def seed_commands(opts: dict[str, Any]) -> dict[str, list[str]]:
    """catdiff's training command again for each of ``training_seeds``, then the peer's for each
    of ``peer_seeds``, each in its own folder."""
    runs = Path(opts["runs"])
    commands = {}
    for name, build, seeds in (
        ("catdiff", ours_command, opts["training_seeds"]),
        ("peer", peer_command, opts["peer_seeds"]),
    ):
        for seed in seeds:
            folder = seed_run(runs, seed, name)
            commands[folder.name] = build(opts, folder, seed)
    return commands


def train_both(opts: dict[str, Any]) -> None:
    """Both trainings side by side, one thread each, then the extra training seeds (catdiff's,
    then the peer's) two at a time; a finished one returns at once."""
    run_side_by_side(opts, train_commands(opts))
    seeds = list(seed_commands(opts).items())
    for i in range(0, len(seeds), 2):
        run_side_by_side(opts, dict(seeds[i : i + 2]))


def run_side_by_side(opts: dict[str, Any], commands: dict[str, list[str]]) -> None:
    runs = Path(opts["runs"])
    # At these small convolutions two 1-thread processes get more done on 2 cores than one
    # 2-thread process, and the two recipes share the machine equally.
    env = child_env(OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    procs = {}
    for name, cmd in commands.items():
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
    from experiments.vs_diffusers import peer
    from experiments.vs_diffusers.report import write_report
    from experiments.vs_diffusers.score import OURS, PEER, Scorer, score_runs, training_seed_recipe

    opts = parse(argv, OPTIONS, "experiments.vs_diffusers")
    opts["runs"] = opts["runs"] or str(
        Path(os.environ.get("CATDIFF_OUTPUTS", "outputs")) / "vs_peer"
    )
    runs = Path(opts["runs"])
    runs.mkdir(parents=True, exist_ok=True)
    if opts["train"]:
        train_both(opts)
    scorer = Scorer.for_data(opts["data"], opts["data_root"], opts["extractor_steps"])
    seed_runs = {training_seed_recipe(s): seed_run(runs, s) for s in opts["training_seeds"]}
    seed_runs |= {
        training_seed_recipe(s, PEER): seed_run(runs, s, "peer") for s in opts["peer_seeds"]
    }
    score_runs(
        {PEER: runs / "peer", OURS: runs / "catdiff", **seed_runs},
        runs / "scores",
        scorer,
        n=opts["n"],
        final_n=opts["final_n"],
        sampler=opts["sampler"],
        steps=opts["sampler_steps"],
        final_step=opts["steps"],
        final_seeds=opts["final_seeds"],
        finals_only_of=set(seed_runs),
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
