"""Each recipe's training speed on an idle machine, measured the same way for both.

``python -m experiments.vs_diffusers.speed [steps=100] [threads=2] [out=FILE.json]``

The comparison's own training runs share the machine (one thread each, side by side, with
scoring beside them), so their wall clocks are upper bounds. This runs each recipe's real
training loop -- the peer's ``experiments.vs_diffusers.peer``, catdiff's ``catdiff.train
experiment=recommended`` -- one after the other on ``threads`` threads, and takes the images
per second between the snapshot at ``steps // 5`` (after start-up and warm-up) and the one at
``steps``: everything the loop does per step counts, start-up does not. The report converts
images seen into minutes with these rates ("wall time at idle-machine speed").
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from catdiff.errors import UserError
from experiments import child_env
from experiments.vs_diffusers.cli import one_line_errors, parse
from experiments.vs_diffusers.score import snapshots_of


def images_per_second(run: Path) -> float:
    snaps = snapshots_of(run)
    if len(snaps) < 2:
        raise RuntimeError(f"{run}: need two snapshots to time the steps between them")
    first, last = snaps[0], snaps[-1]
    return (last["images_seen"] - first["images_seen"]) / (last["wall_s"] - first["wall_s"])


def measure(steps: int = 100, threads: int = 2, data: str = "catfaces") -> dict[str, float]:
    if steps < 10 or steps % 5:
        raise UserError(f"steps={steps} must be a multiple of 5, at least 10")
    env = child_env(OMP_NUM_THREADS=str(threads), OMP_WAIT_POLICY="PASSIVE")
    with tempfile.TemporaryDirectory(prefix="catdiff-speed-") as tmp:
        peer_dir, ours_dir = Path(tmp, "peer"), Path(tmp, "catdiff")
        commands = {
            "diffusers": [
                "experiments.vs_diffusers.peer",
                f"out={peer_dir}",
                f"steps={steps}",
                f"snapshot_every={steps // 5}",
                f"resume_every={steps}",
                f"threads={threads}",
                f"data={data}",
            ],
            "catdiff": [
                "catdiff.train",
                "experiment=recommended",
                f"data={data}",
                f"hydra.run.dir={ours_dir}",
                f"trainer.max_steps={steps}",
                f"trainer.val_check_interval={steps}",
                f"callbacks.snapshots.every_n_steps={steps // 5}",
                "callbacks.sample_grid.every_n_steps=0",
                "logger=none",
            ],
        }
        rates = {}
        for name, cmd in commands.items():
            print(f"timing {name}: {steps} steps on {threads} thread(s)", file=sys.stderr)
            proc = subprocess.run(
                [sys.executable, "-m", *cmd], env=env, capture_output=True, text=True
            )
            if proc.returncode:
                raise RuntimeError(f"{name} training failed:\n{proc.stderr[-2000:]}")
            rates[name] = images_per_second(peer_dir if name == "diffusers" else ours_dir)
    return {"threads": threads, "steps": steps, "img_per_s": rates}


@one_line_errors
def main(argv: list[str] | None = None) -> None:
    options = {"steps": 100, "threads": 2, "out": None, "data": "catfaces"}
    opts = parse(argv, options, "experiments.vs_diffusers.speed")
    result = measure(opts["steps"], opts["threads"], opts["data"])
    for name, rate in result["img_per_s"].items():
        print(f"{name}: {rate:.1f} img/s on {result['threads']} thread(s)")
    if opts["out"]:
        Path(opts["out"]).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
