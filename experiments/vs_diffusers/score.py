"""Score every snapshot of the two runs with catdiff's metrics, off the training clock.

``python -m experiments.vs_diffusers.score peer=DIR ours=RUN_DIR out=DIR [n=500] [final_n=1000] [finals_only=true]
[ours_seeds=RUN_DIR,RUN_DIR] [peer_seeds=DIR,DIR]``

For each snapshot (the peer's ``DIR/snapshots/step*.pt``, ours ``RUN_DIR/snapshots/step*.ckpt``):
``n`` samples (``final_n`` at ``final_step``, the end of training; by default each run's last
snapshot, sampled once per seed of ``final_seeds``, default ``seed`` alone) with the recipe's
own sampler -- the
peer's DDIM 50 steps in fp32, ours ``sampler`` at ``steps`` -- then KID and FID against the
training split on the catdiff extractor (gray space), and the copying check against the
held-out test faces. Results go to ``out/scores.jsonl`` one line per snapshot (a rerun skips
what is there, so an interrupted scoring resumes), samples to ``out/samples/``.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from catdiff.config import conf_dir
from catdiff.errors import UserError
from catdiff.metrics.copying import copying
from catdiff.metrics.detail import laplacian_energy
from catdiff.metrics.fid import fid_kid, real_features
from catdiff.metrics.score import extractor_for
from experiments.vs_diffusers import peer
from experiments.vs_diffusers.cli import one_line_errors, parse

PEER, OURS = "diffusers", "catdiff"
# The peer's final network sampled with catdiff's sampler: how much of the gap is the sampler.
PEER_OUR_SAMPLER = "diffusers net, catdiff sampler"
OPTIONS: dict[str, Any] = {
    "peer": None,
    "ours": None,
    "out": None,
    "n": 500,
    "final_n": 1000,
    "final_step": 0,  # 0: each run's last snapshot is its final one
    "seed": 0,
    # The final snapshots' sampling seeds (empty: `seed`). Near the real-face floor KID moves
    # with the seed by more than its subset std: the report averages the final over these.
    "final_seeds": (),
    # catdiff's sampler and its steps; unset: conf/experiment/recommended.yaml's (recipe_sampler)
    "sampler": None,
    "steps": 0,
    "spacing": None,  # None: the sampler's default (dpm_solver: logsnr)
    "extractor_steps": 0,
    "data": "catfaces",
    "data_root": None,
    # Also sample the peer's final snapshot with `sampler`. Off: on the peer's eps net,
    # DPM-Solver++ 20 left 6 of 16 samples as noise (KID 1.13, 2026-11-28). Not a bug in the
    # adapter: catdiff's DDIM-50 without clipping gives exactly diffusers' DDIM-50 images from it.
    # With clip_x0, catdiff re-derives eps from the clipped x0 (guided-diffusion's convention),
    # diffusers keeps the net's eps; on a linear-schedule eps net (alpha_bar_999 ~ 4e-5) the early
    # x0 estimates are huge, clipping saturates them, and a third of the 64 samples end as noise.
    # DDIM's `sampler.rederive_eps=false` keeps the net's eps, diffusers' way (tested equal).
    "peer_with_our_sampler": False,
    # More training runs of catdiff's recipe (the same experiment at other `seed=`), comma
    # separated: only their finals are scored (final_n x final_seeds), as recipes named
    # "catdiff (training seed K)", so the report gives the recipe's KID over training seeds.
    "ours_seeds": None,
    # The same for the peer: its recipe trained again (`python -m experiments.vs_diffusers.peer seed=K`),
    # scored as "diffusers (training seed K)", so that both sides of the ratio are means.
    "peer_seeds": None,
    # Only the finals: e.g. final_n=5000 final_seeds=10 finals_only=true, a less noisy KID of
    # the end of training at a seed nothing was tuned on, without rescoring the curves.
    "finals_only": False,
}


def snapshots_of(run: Path) -> list[dict[str, Any]]:
    """The snapshots of a run, oldest first: {path, step, images_seen, wall_s}."""
    rows_path = run / "snapshots" / "snapshots.csv"
    if not rows_path.is_file():
        rows_path = run / "snapshots.csv"
    if not rows_path.is_file():
        if run.is_dir():  # training, no snapshot yet
            return []
        raise UserError(f"{run} does not exist: pass the folder of a peer run or a catdiff run")
    suffix = ".pt" if (run / "snapshots.csv").is_file() else ".ckpt"
    width = 6 if suffix == ".pt" else 7
    rows = {}
    with rows_path.open() as f:
        for row in csv.DictReader(f):
            step = int(row["step"])
            path = run / "snapshots" / f"step{step:0{width}d}{suffix}"
            if path.is_file():  # a resumed run may list a step twice: the last row wins
                rows[step] = {
                    "path": path,
                    "step": step,
                    "images_seen": int(row["images_seen"]),
                    "wall_s": float(row["wall_s"]),
                }
    return [rows[s] for s in sorted(rows)]


def sample_peer(path: Path, n: int, seed: int) -> tuple[torch.Tensor, int]:
    model = peer.load_snapshot(path)
    return peer.sample(model, n, seed=seed), peer.RECIPE["sample_steps"]


def _sample_with_ours(
    net: Any,
    diffusion: Any,
    shape: tuple[int, ...],
    n: int,
    seed: int,
    sampler: str,
    steps: int,
    spacing: str | None,
) -> tuple[torch.Tensor, int, Any]:
    """n uint8 samples of ``net`` with catdiff's ``sampler``, fp32 on the CPU, like
    catdiff.evaluate: the comparison is about the recipes, not sampling precision."""
    from catdiff.cli import build_sampler
    from catdiff.diffusion.generate import generate

    spaced = {"spacing": spacing} if spacing is not None else {}  # None: the sampler's own
    chosen = build_sampler(sampler, steps=steps, clip_x0=True, **spaced)
    images, _, _ = generate(chosen, net, diffusion, n, shape, seed, 500, torch.device("cpu"))
    return images, chosen.nfe(diffusion), chosen


def sample_ours(
    path: Path, n: int, seed: int, sampler: str, steps: int, spacing: str | None = None
) -> tuple[torch.Tensor, int, Any]:
    from catdiff.checkpoints import load_checkpoint, load_model

    model, diffusion, shape = load_model(load_checkpoint(path), "ema")
    return _sample_with_ours(model, diffusion, shape, n, seed, sampler, steps, spacing)


def sample_peer_with_ours(
    path: Path, n: int, seed: int, sampler: str, steps: int, spacing: str | None = None
) -> tuple[torch.Tensor, int, Any]:
    """The peer's network (eps, linear betas) through catdiff's sampler."""
    from catdiff.diffusion import GaussianDiffusion, make_betas
    from experiments.bench.peer import forward_fn

    net = forward_fn(peer.load_snapshot(path))
    diffusion = GaussianDiffusion(make_betas("linear", peer.RECIPE["T"]), objective="eps")
    size = peer.UNET_CONFIG["sample_size"]
    return _sample_with_ours(net, diffusion, (1, size, size), n, seed, sampler, steps, spacing)


class Scorer:
    """KID/FID (one extractor, real features extracted once) and the copying check."""

    def __init__(
        self,
        train: torch.Tensor,
        test: torch.Tensor,
        cache_dir: Path | None,
        **metrics_options: Any,
    ) -> None:
        """``metrics_options`` override conf/evaluate.yaml's ``metrics.*`` (e.g. extractor_steps)."""
        metrics = OmegaConf.load(conf_dir() / "evaluate.yaml").metrics
        unknown = sorted(set(metrics_options) - set(metrics) - set(metrics.fid_kid))
        if unknown:
            raise UserError(
                f"unknown metrics option(s) {', '.join(unknown)}: see conf/evaluate.yaml"
            )
        metrics = OmegaConf.merge(metrics, metrics_options)
        self.extractor = extractor_for(train, metrics, cache_dir)
        self.real = real_features(self.extractor, train)
        self.train, self.test = train, test
        self.kid_subsets = metrics_options.get("kid_subsets", metrics.fid_kid.kid_subsets)
        self.train_detail = laplacian_energy(train)

    def __call__(self, samples: torch.Tensor) -> dict[str, Any]:
        result = fid_kid(self.extractor, self.real, samples, kid_subsets=self.kid_subsets)
        return {
            "kid": {"mean": result["kid_mean"], "std": result["kid_std"]},
            "fid": result["fid"],
            "kid_subset_size": result["kid_subset_size"],
            "copying": copying(samples, self.train, self.test),
            "detail": laplacian_energy(samples) / self.train_detail,
        }

    @classmethod
    def for_data(
        cls, data: str = "catfaces", data_root: str | None = None, extractor_steps: int = 0
    ) -> Scorer:
        """The scorer of conf/data/<data>.yaml's splits, extractors cached in the data dir."""
        import os

        from experiments.vs_diffusers.data import training_images

        images = training_images(data_root, data)
        cache = Path(os.environ.get("CATDIFF_DATA_DIR", "data")) / "extractors"
        return cls(images["train"], images["test"], cache, extractor_steps=extractor_steps)

    def held_out_reference(self) -> dict[str, Any]:
        """The held-out real faces scored like samples: the floor no model can beat."""
        return {"recipe": "held-out real faces", **self(self.test), "extractor": self.info()}

    def info(self) -> dict[str, Any]:
        return {**self.extractor.info(), "reference": "train", "n_reference": len(self.train)}


def score_runs(
    runs: dict[str, Path],
    out: Path,
    scorer: Scorer,
    n: int = 500,
    final_n: int = 1000,
    seed: int = 0,
    sampler: str | None = None,
    steps: int | None = None,
    final_step: int | None = None,
    spacing: str | None = None,
    peer_with_our_sampler: bool = False,
    final_seeds: tuple[int, ...] = (),
    finals_only: bool = False,
    finals_only_of: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """Score every snapshot of every run not yet in ``out/scores.jsonl``; returns all lines.

    ``final_n`` samples for a snapshot at ``final_step`` (the end of training; default: each
    run's last snapshot), once per seed of ``final_seeds`` (default: ``seed``), ``n`` samples
    at ``seed`` for the others (none with ``finals_only``, nor for the recipes of
    ``finals_only_of``). ``peer_with_our_sampler``: the peer's
    final snapshot is also sampled with catdiff's sampler (recipe ``PEER_OUR_SAMPLER``).
    ``sampler`` and ``steps`` unset: the recipe's own (:func:`recipe_sampler`).
    """
    if sampler is None or not steps:
        recipe_name, recipe_steps = recipe_sampler()
        sampler, steps = sampler or recipe_name, steps or recipe_steps
    out.mkdir(parents=True, exist_ok=True)
    (out / "samples").mkdir(exist_ok=True)
    lines_path = out / "scores.jsonl"
    done = read_scores(lines_path)
    seen = {(d["recipe"], d["step"], d["n"], d.get("seed", 0)): d for d in done}
    if "held-out real faces" not in {d["recipe"] for d in done}:
        _append(lines_path, scorer.held_out_reference() | {"step": 0, "n": len(scorer.test)})
    jobs = []
    for recipe, run in runs.items():
        snaps = snapshots_of(run)
        for i, snap in enumerate(snaps):
            last = snap["step"] == final_step if final_step else i == len(snaps) - 1
            if not last:
                if not finals_only and recipe not in finals_only_of:
                    jobs.append((recipe, run, snap, n, seed))
                continue
            for s in final_seeds or (seed,):
                jobs.append((recipe, run, snap, final_n, s))
            if recipe == PEER and peer_with_our_sampler:
                jobs.append((PEER_OUR_SAMPLER, run, snap, final_n, seed))
    pending = []
    for job in jobs:  # every line kept must match this call's sampler, before anything is scored
        recipe, _, snap, count, job_seed = job
        scored = seen.get((recipe, snap["step"], count, job_seed))
        if scored is None:
            pending.append(job)
        elif not is_peer(recipe):
            _check_same_sampler(scored, sampler, steps, spacing, lines_path)
    for recipe, run, snap, count, job_seed in pending:
        start = time.perf_counter()
        if is_peer(recipe):
            samples, nfe = sample_peer(snap["path"], count, job_seed)
            sampler_name, how = "ddim", "diffusers DDIMScheduler.from_config, eta 0"
            how_spaced = peer.ddim_spacing()
        else:
            take = sample_peer_with_ours if recipe == PEER_OUR_SAMPLER else sample_ours
            samples, nfe, chosen = take(snap["path"], count, job_seed, sampler, steps, spacing)
            sampler_name, how, how_spaced = sampler, repr(chosen), chosen.spacing
        seconds = time.perf_counter() - start
        torch.save(samples, samples_path(out / "samples", recipe, snap["step"], count, job_seed))
        line = {
            "recipe": recipe,
            "run": str(run),
            "step": snap["step"],
            "images_seen": snap["images_seen"],
            "wall_s": snap["wall_s"],
            "sampler": sampler_name,
            "sampler_config": how,
            "spacing": how_spaced,
            "nfe": nfe,
            "n": count,
            "seed": job_seed,
            "sample_s": round(seconds, 1),
            **scorer(samples),
            "extractor": scorer.info(),
        }
        _append(lines_path, line)
        print(
            f"{recipe} step {snap['step']} ({snap['images_seen']:,} images, n={count}, "
            f"seed {job_seed}): "
            f"KID {line['kid']['mean']:.3f} +- {line['kid']['std']:.3f}, FID {line['fid']:.2f}",
            file=sys.stderr,
        )
    return read_scores(lines_path)


def _check_same_sampler(
    line: dict[str, Any], sampler: str, steps: int, spacing: str | None, lines_path: Path
) -> None:
    """A line already in ``lines_path`` is kept only if it was sampled the way this call asks:
    resuming must not mix samplers in one scores file (a line is identified by recipe, step,
    n and seed, not by how it was sampled)."""
    same = line["sampler"] == sampler and (sampler == "ddpm" or line["nfe"] == steps)
    if spacing is not None:
        same = same and line.get("spacing") == spacing
    if not same:
        spaced = f", {line.get('spacing')} spacing" if spacing is not None else ""
        raise UserError(
            f"{lines_path} already scores {line['recipe']} step {line['step']} (n={line['n']}, "
            f"seed {line.get('seed', 0)}) with {line['sampler']} at {line['nfe']} evaluations"
            f"{spaced}, not {sampler} at {steps}: score into a new out= folder, or pass the "
            "sampler= and steps= it was scored with"
        )


def recipe_sampler(experiment: str = "recommended") -> tuple[str, int]:
    """The sampler (its conf/sampler/ name) and steps (DDPM's: every one of the T) that
    ``experiment=<experiment>`` samples with: one place, the experiment file, says how the
    comparison samples catdiff's recipe."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose("train", [f"experiment={experiment}"], return_hydra_config=True)
    return str(cfg.hydra.runtime.choices.sampler), int(cfg.sampler.get("steps") or cfg.diffusion.T)


def samples_path(folder: Path, recipe: str, step: int, n: int, seed: int = 0) -> Path:
    """Where a scored line's samples are saved (seed 0 keeps the name it always had)."""
    tag = f"_seed{seed}" if seed else ""
    return folder / f"{recipe}_step{step:07d}_n{n}{tag}.pt"


def read_scores(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _append(path: Path, line: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(line) + "\n")


def training_seed_recipe(seed: int, base: str = OURS) -> str:
    """The recipe name of another training run of ``base``'s recipe, at training ``seed``."""
    return f"{base} (training seed {seed})"


def recipe_family(recipe: str) -> str | None:
    """PEER or OURS for a recipe's main run and its reruns at other training seeds; None for
    anything else (other catdiff variants, the peer's net through catdiff's sampler)."""
    for base in (OURS, PEER):
        if recipe == base or recipe.startswith(f"{base} (training seed "):
            return base
    return None


def is_seed_run(recipe: str) -> bool:
    """A finals-only rerun of either recipe at another training seed (``ours_seeds`` or
    ``peer_seeds``)."""
    return recipe_family(recipe) is not None and recipe not in (OURS, PEER)


def is_peer(recipe: str) -> bool:
    """The peer's recipe: its main run or a rerun at another training seed."""
    return recipe_family(recipe) == PEER


def _seed_of_ours(folder: Path) -> int:
    config = folder / "config.yaml"
    if not config.is_file():
        raise UserError(f"ours_seeds: {config} does not exist (a catdiff run folder has one)")
    seed = OmegaConf.load(config).get("seed")
    if not isinstance(seed, int):
        raise UserError(f"ours_seeds: {config} has no integer `seed`")
    return seed


def _seed_of_peer(folder: Path) -> int:
    snaps = snapshots_of(folder) if folder.is_dir() else []
    if not snaps:
        raise UserError(f"peer_seeds: {folder} has no snapshot (a peer run folder has them)")
    last = snaps[-1]["path"]
    seed = torch.load(last, map_location="cpu", weights_only=False).get("seed")
    if not isinstance(seed, int):
        raise UserError(f"peer_seeds: {last} does not record its training `seed`")
    return seed


def training_seed_runs(folders: str | None, base: str = OURS) -> dict[str, Path]:
    """``ours_seeds=DIR,DIR`` (``base`` OURS) or ``peer_seeds=DIR,DIR`` (``base`` PEER):
    {training_seed_recipe(seed, base): run}, each run's seed read from its config.yaml (catdiff)
    or its last snapshot (the peer)."""
    key, seed_of = ("ours_seeds", _seed_of_ours) if base == OURS else ("peer_seeds", _seed_of_peer)
    runs: dict[str, Path] = {}
    for folder in (f.strip() for f in (folders or "").split(",")):
        if not folder:
            continue
        seed = seed_of(Path(folder))
        recipe = training_seed_recipe(seed, base)
        if recipe in runs:
            raise UserError(f"{key}: {runs[recipe]} and {folder} both have seed={seed}")
        runs[recipe] = Path(folder)
    return runs


@one_line_errors
def main(argv: list[str] | None = None) -> None:
    opts = parse(argv, OPTIONS, "experiments.vs_diffusers.score", required=["peer", "ours", "out"])
    seed_runs = training_seed_runs(opts["ours_seeds"]) | training_seed_runs(
        opts["peer_seeds"], PEER
    )
    scorer = Scorer.for_data(opts["data"], opts["data_root"], opts["extractor_steps"])
    score_runs(
        {PEER: Path(opts["peer"]), OURS: Path(opts["ours"]), **seed_runs},
        Path(opts["out"]),
        scorer,
        n=opts["n"],
        final_n=opts["final_n"],
        seed=opts["seed"],
        sampler=opts["sampler"],
        steps=opts["steps"],
        final_step=opts["final_step"] or None,
        spacing=opts["spacing"],
        peer_with_our_sampler=opts["peer_with_our_sampler"],
        final_seeds=opts["final_seeds"],
        finals_only=opts["finals_only"],
        finals_only_of=set(seed_runs),
    )


if __name__ == "__main__":
    main()
