"""``experiments/vs_diffusers/REPORT.md`` from the scores of :mod:`experiments.vs_diffusers.score`.

``python -m experiments.vs_diffusers.report scores=DIR/scores.jsonl out=experiments/vs_diffusers``

Curves of KID against images seen and against training wall time, the final samples side by
side, the samples closest to a training face next to that face, the table, and the two
headline ratios: KID at the peer's budget, and the wall time catdiff needs to reach the peer's
final KID against the wall time the peer needs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from catdiff.images import grid
from catdiff.metrics.copying import nearest_distances
from catdiff.report.figures import pyplot, save_figure
from experiments.vs_diffusers import peer
from experiments.vs_diffusers.cli import one_line_errors, parse
from experiments.vs_diffusers.score import (
    OURS,
    PEER,
    PEER_OUR_SAMPLER,
    is_seed_run,
    read_scores,
    recipe_family,
    samples_path,
)

REAL = "held-out real faces"
XLABELS = {
    "images_seen": "images seen (thousands)",
    "wall_s": "training wall time as run (min; 1 thread each, machine shared)",
    "idle_s": "training time at idle-machine speed (min; 2 threads, one run at a time)",
}
COLORS = {PEER: "tab:orange", OURS: "tab:blue", PEER_OUR_SAMPLER: "tab:red"}
OTHER_COLORS = ("tab:green", "tab:purple", "tab:brown", "tab:gray")  # other catdiff variants
# Recipes scored from another recipe's training run train at that run's speed.
TRAINED_AS = {PEER_OUR_SAMPLER: PEER}
BUDGET = peer.RECIPE["steps"] * peer.RECIPE["batch_size"]  # 384,000 images seen


def curves(scores: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Each recipe's scores by step; where a step was scored at several n, the largest n, and
    where at several sampling seeds, their average (:func:`over_seeds`)."""
    out: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for line in scores:
        if line["recipe"] == REAL:
            continue
        by_step = out.setdefault(line["recipe"], {})
        kept = by_step.setdefault(line["step"], [])
        if kept and line["n"] > kept[0]["n"]:
            kept.clear()
        if not kept or line["n"] == kept[0]["n"]:
            kept.append(line)
    return {recipe: [over_seeds(steps[s]) for s in sorted(steps)] for recipe, steps in out.items()}


def over_seeds(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """One line for a snapshot scored at several sampling seeds: KID and FID averaged over the
    seeds, the KID std is then the std across seeds (which, near the real-face floor, is larger
    than the std over subsets of one sample set) and ``seeds`` lists them; one seed: unchanged."""
    by_seed = {line.get("seed", 0): line for line in lines}  # a rescored seed: the last line
    if len(by_seed) == 1:
        return lines[-1]
    seeds = sorted(by_seed)
    kids = np.array([by_seed[s]["kid"]["mean"] for s in seeds])
    fids = np.array([by_seed[s]["fid"] for s in seeds])
    copy = [by_seed[s]["copying"] for s in seeds]
    first = by_seed[seeds[0]]
    merged = {
        **first,
        "seeds": seeds,
        "kid": {
            "mean": float(kids.mean()),
            "std": float(kids.std(ddof=1)),
            "per_seed": kids.tolist(),
        },
        "fid": float(fids.mean()),
        "fid_per_seed": fids.tolist(),
        "copying": {
            **copy[0],
            "rate_samples": float(np.mean([c["rate_samples"] for c in copy])),
            "rate_se": float(np.sqrt(np.sum([c["rate_se"] ** 2 for c in copy])) / len(copy)),
            "median_nn_samples": float(np.mean([c["median_nn_samples"] for c in copy])),
        },
    }
    if all("detail" in by_seed[s] for s in seeds):
        merged["detail_per_seed"] = [float(by_seed[s]["detail"]) for s in seeds]
        merged["detail"] = float(np.mean(merged["detail_per_seed"]))
    if all("sample_s" in by_seed[s] for s in seeds):
        merged["sample_s"] = float(np.mean([by_seed[s]["sample_s"] for s in seeds]))
    return merged


def real_reference(scores: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((line for line in scores if line["recipe"] == REAL), None)


def add_idle_time(runs: dict[str, list[dict[str, Any]]], speed: dict[str, Any] | None) -> None:
    """``idle_s``: images seen over the recipe's idle-machine img/s (experiments.vs_diffusers.speed)."""
    if not speed:
        return
    for recipe, lines in runs.items():
        rate = speed["img_per_s"].get(TRAINED_AS.get(recipe, recipe))
        for line in lines:
            if rate:
                line["idle_s"] = line["images_seen"] / rate


def headline(runs: dict[str, list[dict[str, Any]]], budget: int) -> dict[str, Any]:
    """The two ratios at ``budget`` images seen, where the scores allow them (None otherwise,
    with the reason)."""
    peer, ours = runs.get(PEER, []), runs.get(OURS, [])
    result: dict[str, Any] = {"kid_ratio": None, "time_ratio": None, "why": []}
    if not peer or not ours:
        result["why"].append("one of the runs has no scored snapshot yet")
        return result
    peer_final, ours_final = peer[-1], ours[-1]
    short = [
        f"{name}'s last scored snapshot is at {last['images_seen']:,} images"
        for name, last in (("the peer", peer_final), ("catdiff", ours_final))
        if last["images_seen"] != budget
    ]
    if short:
        result["why"].append(f"the budget is {budget:,} images; " + " and ".join(short))
        return result
    result["kid_ratio"] = ours_final["kid"]["mean"] / peer_final["kid"]["mean"]
    result["over_training_seeds"] = over_training_seeds(runs, budget)
    target = peer_final["kid"]["mean"]
    reached = next((line for line in ours if line["kid"]["mean"] <= target), None)
    result["peer_final"] = peer_final
    result["ours_final"] = ours_final
    result["ours_reaches_peer"] = reached
    if reached is not None:
        result["time_ratio"] = reached["wall_s"] / peer_final["wall_s"]
        if "idle_s" in reached and "idle_s" in peer_final:
            result["idle_time_ratio"] = reached["idle_s"] / peer_final["idle_s"]
    else:
        result["why"].append("catdiff's snapshots never reach the peer's last KID")
    return result


def over_training_seeds(
    runs: dict[str, list[dict[str, Any]]], budget: int
) -> dict[str, Any] | None:
    """Each recipe's final KID at ``budget`` over its training runs (the curves' run and the
    reruns of ``ours_seeds`` / ``peer_seeds``): each run's KID (its mean over sampling seeds),
    their mean and std across runs (None for one run), and catdiff's mean over the peer's mean,
    per catdiff run too. None unless one recipe has a rerun at the budget beside its main run."""
    sides = {}
    for main in (OURS, PEER):
        finals = {
            recipe: float(lines[-1]["kid"]["mean"])
            for recipe, lines in runs.items()
            if recipe_family(recipe) == main and lines and lines[-1]["images_seen"] == budget
        }
        if main not in finals:
            return None
        kids = np.array(list(finals.values()))
        sides[main] = {
            "runs": finals,
            "mean": float(kids.mean()),
            "std": float(kids.std(ddof=1)) if len(kids) > 1 else None,
        }
    ours, theirs = sides[OURS], sides[PEER]
    if len(ours["runs"]) < 2 and len(theirs["runs"]) < 2:
        return None
    return {
        **ours,
        "ratio": ours["mean"] / theirs["mean"],
        "ratios": [k / theirs["mean"] for k in ours["runs"].values()],
        "peer": theirs,
    }


def at_equal_images(runs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Every images-seen point both runs were scored at: their KIDs and catdiff / diffusers."""
    peer = {line["images_seen"]: line for line in runs.get(PEER, [])}
    rows = []
    for line in runs.get(OURS, []):
        other = peer.get(line["images_seen"])
        if other is not None:
            rows.append(
                {
                    "images_seen": line["images_seen"],
                    "peer": other["kid"],
                    "ours": line["kid"],
                    "ratio": line["kid"]["mean"] / other["kid"]["mean"],
                }
            )
    return rows


# ---- figures ----------------------------------------------------------------------------------


def kid_curves(
    runs: dict[str, list[dict[str, Any]]], real: dict[str, Any] | None, x: str, path: Path
) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    scale = 1 / 1000 if x == "images_seen" else 1 / 60
    others = iter(OTHER_COLORS * len(runs))
    for recipe, lines in runs.items():
        if is_seed_run(recipe):  # a final only: its spread is in the headline
            continue
        color = COLORS.get(recipe) or next(others)
        lines = [line for line in lines if x in line]  # idle_s: only recipes timed idle
        if not lines:
            continue
        xs = np.array([line[x] for line in lines]) * scale
        ys = np.array([line["kid"]["mean"] for line in lines])
        es = np.array([line["kid"]["std"] for line in lines])
        ax.errorbar(
            xs,
            ys,
            yerr=es,
            marker="o",
            ms=3,
            capsize=2,
            label=recipe,
            color=color,
        )
    if real is not None:
        ax.axhline(real["kid"]["mean"], color="gray", ls=":", label=f"{REAL} (floor)")
    if PEER in runs and runs[PEER]:
        ax.axhline(
            runs[PEER][-1]["kid"]["mean"],
            color=COLORS[PEER],
            ls="--",
            lw=0.8,
            label="peer's last KID",
        )
    if x != "images_seen":
        ax.axvline(15, color="black", ls="--", lw=0.8, label="15 min")
    ax.set_xlabel(XLABELS[x])
    ax.set_ylabel("KID (catdiff extractor)")
    ax.set_yscale("log")
    ax.legend()
    save_figure(fig, path)
    return (
        "KID against the training split (mean over 100 subsets; error bars: their std) of each "
        "snapshot's EMA weights; log scale (the held-out faces' KID, about 0, is off the axis when "
        "it is not positive). A point sampled at several seeds (the finals) is the mean over "
        "them, its error bar their std; the other points are one seed each, so part of the "
        "jump to a final is the seed, not training."
    )


def detail_vs_kid(
    runs: dict[str, list[dict[str, Any]]], real: dict[str, Any] | None, budget: int, path: Path
) -> str | None:
    """Each final at ``budget`` (every training run, every sampling seed): KID against the
    detail ratio. None when fewer than two finals carry the detail ratio."""
    points: dict[str, list[tuple[float, float]]] = {}
    for recipe, lines in runs.items():
        last = lines[-1] if lines else None
        if last is None or last["images_seen"] != budget or "detail" not in last:
            continue
        details = last.get("detail_per_seed", [last["detail"]])
        kids = last["kid"].get("per_seed", [last["kid"]["mean"]])
        family = recipe_family(recipe) or recipe
        points.setdefault(family, []).extend(zip(details, kids, strict=True))
    if sum(len(p) for p in points.values()) < 2:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    others = iter(OTHER_COLORS * len(points))
    for family, pairs in points.items():
        xs, ys = zip(*pairs, strict=True)
        label = f"{family} (every training run)" if family in (OURS, PEER) else family
        ax.scatter(xs, ys, s=14, label=label, color=COLORS.get(family) or next(others))
    if real is not None and "detail" in real:
        ax.scatter(
            [real["detail"]], [real["kid"]["mean"]], marker="*", s=60, color="gray", label=REAL
        )
    ax.axvline(1.0, color="gray", ls=":", lw=0.8)
    ax.set_xlabel("detail: samples' mean squared Laplacian / the training faces'")
    ax.set_ylabel("KID (catdiff extractor)")
    ax.legend()
    save_figure(fig, path)
    return (
        f"Every final at {budget:,} images, one point per training run and sampling seed: KID "
        "against the detail ratio (catdiff.metrics.detail; 1 = as much fine texture as the "
        "training faces, dotted). Sample sets smoother than the faces score worse KIDs."
    )


def _load_samples(samples_dir: Path, line: dict[str, Any]) -> torch.Tensor | None:
    path = samples_path(samples_dir, line["recipe"], line["step"], line["n"], line.get("seed", 0))
    return torch.load(path, weights_only=True) if path.is_file() else None


def sample_grids(
    runs: dict[str, list[dict[str, Any]]], samples_dir: Path, path: Path
) -> str | None:
    panels = []
    for recipe, lines in runs.items():
        images = _load_samples(samples_dir, lines[-1]) if not is_seed_run(recipe) else None
        if images is not None:
            panels.append((recipe, lines[-1], grid(images[:64], nrow=8)))
    if not panels:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.5))
    for ax, (recipe, line, image) in zip(np.atleast_1d(axes), panels, strict=True):
        ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(
            f"{recipe}: {line['images_seen'] / 1000:.0f}k images\n"
            f"{line['sampler']} {line['nfe']} NFE, KID {line['kid']['mean']:.3g}"
        )
        ax.axis("off")
    save_figure(fig, path)
    return "The first 64 samples of each run's last snapshot (seed 0), no cherry-picking."


def nearest_pairs(
    runs: dict[str, list[dict[str, Any]]],
    samples_dir: Path,
    train: torch.Tensor,
    path: Path,
    k: int = 8,
) -> str | None:
    rows = []
    for recipe, lines in runs.items():
        images = _load_samples(samples_dir, lines[-1]) if not is_seed_run(recipe) else None
        if images is None:
            continue
        dist, idx = nearest_distances(images, train)
        order = dist.argsort()[:k]
        pairs = torch.stack(
            [torch.stack([images[i], _oriented(images[i], train[idx[i]])]) for i in order]
        )
        rows.append((recipe, grid(pairs.flatten(0, 1), nrow=2 * k), dist[order]))
    if not rows:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(len(rows), 1, figsize=(8, 1.3 * len(rows)))
    for ax, (recipe, image, dist) in zip(np.atleast_1d(axes), rows, strict=True):
        ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(f"{recipe}: L2 " + ", ".join(f"{d:.2f}" for d in dist.tolist()), fontsize=7)
        ax.axis("off")
    save_figure(fig, path)
    return (
        "Each run's 8 samples closest to a training face (left of each pair) next to that face "
        "(right, mirrored when the mirror is closer); L2 distance on 28x28 pixels in [0, 1]."
    )


def _oriented(sample: torch.Tensor, face: torch.Tensor) -> torch.Tensor:
    flipped = face.flip(-1)
    d = (sample.float() - face.float()).square().sum()
    return flipped if (sample.float() - flipped.float()).square().sum() < d else face


# ---- markdown ---------------------------------------------------------------------------------


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def _row(line: dict[str, Any]) -> list[str]:
    c = line["copying"]
    return [
        line["recipe"],
        f"{line['images_seen']:,}" if line["recipe"] != REAL else "-",
        _minutes(line["wall_s"]) if "wall_s" in line else "-",
        _minutes(line["idle_s"]) if "idle_s" in line else "-",
        _sampler(line),
        f"{line['n']:,}" + (f" × {len(line['seeds'])} seeds" if "seeds" in line else ""),
        f"{line['kid']['mean']:.4g} ± {line['kid']['std']:.2g}",
        _fid(line),
        f"{c['rate_samples']:.1%} (± {c['rate_se']:.1%})",
        f"{c['median_nn_samples']:.2f}",
        f"{line['detail']:.2f}" if "detail" in line else "-",
        f"{line['sample_s'] / line['n'] * 1000:.0f} ms" if "sample_s" in line else "-",
    ]


def _seeds_note(*lines: dict[str, Any]) -> str:
    """The per-seed KIDs of the finals that were sampled at several seeds."""
    parts = [
        f"{line['recipe']} at seeds {', '.join(map(str, line['seeds']))}: "
        + ", ".join(f"{k:.4f}" for k in line["kid"]["per_seed"])
        for line in lines
        if "seeds" in line
    ]
    if not parts:
        return ""
    return (
        " KIDs are means over sampling seeds (" + "; ".join(parts) + "): near the floor one "
        "seed's KID moves by more than its std over subsets."
    )


def _run_name(recipe: str) -> str:
    """'training seed K' for a rerun, "the curves' run" for a recipe's main run."""
    return "the curves' run" if recipe in (OURS, PEER) else recipe.split("(", 1)[1].rstrip(")")


def _runs(side: dict[str, Any]) -> str:
    return f"{len(side['runs'])} run" + ("s" if len(side["runs"]) > 1 else "")


def _over_runs(side: dict[str, Any]) -> str:
    """'mean ± std (std across runs; the curves' run k; training seed 1 k)', or for one run
    its KID and that its spread over training seeds is not measured."""
    if side["std"] is None:
        return f"{side['mean']:.4g} (one run: its spread over training seeds is not measured)"
    per_run = "; ".join(f"{_run_name(recipe)} {kid:.4f}" for recipe, kid in side["runs"].items())
    return f"{side['mean']:.4g} ± {side['std']:.2g} (std across runs; {per_run})"


def _fid(line: dict[str, Any]) -> str:
    if "fid_per_seed" in line:
        return f"{line['fid']:.3f} (" + ", ".join(f"{f:.3f}" for f in line["fid_per_seed"]) + ")"
    return f"{line['fid']:.2f}"


def _sampler(line: dict[str, Any]) -> str:
    if "sampler" not in line:
        return "-"
    spacing = f", {line['spacing']} steps" if line.get("spacing") else ""
    return f"{line['sampler']} {line['nfe']}{spacing}"


HEADER = [
    "run",
    "images seen",
    "training time as run",
    "at idle speed",
    "sampler (NFE)",
    "n",
    "KID ± std",
    "FID",
    "below held-out 5% NN distance",
    "median NN distance",
    "detail (faces: 1)",
    "sampling per image",
]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def markdown(
    runs: dict[str, list[dict[str, Any]]],
    real: dict[str, Any] | None,
    head: dict[str, Any],
    figures: dict[str, tuple[str, str]],
    setup: str,
) -> str:
    out = ["# catdiff vs diffusers: better cat faces per CPU-minute", ""]
    out += ["## Headline", ""]
    if head["kid_ratio"] is not None:
        out.append(
            f"- **KID at the peer's budget** ({head['peer_final']['images_seen']:,} images seen): "
            f"catdiff {head['ours_final']['kid']['mean']:.4g} vs diffusers "
            f"{head['peer_final']['kid']['mean']:.4g}, ratio **{head['kid_ratio']:.2f}** "
            "(target: at most 0.33)." + _seeds_note(head["ours_final"], head["peer_final"])
        )
    seeds = head.get("over_training_seeds")
    if seeds is not None:
        theirs = seeds["peer"]
        out.append(
            "- **Over training runs** (a recipe trained again at other `seed=`, each final "
            f"sampled like the one above): catdiff's recipe over {_runs(seeds)}: KID "
            f"{_over_runs(seeds)}; the peer's over {_runs(theirs)}: KID "
            f"{_over_runs(theirs)}. Ratio of the means **{seeds['ratio']:.2f}**; "
            "catdiff's runs one by one against the peer's mean: "
            + ", ".join(f"{r:.2f}" for r in seeds["ratios"])
            + ". A recipe's KID is its mean: one training run is one draw from it."
        )
    if head["time_ratio"] is not None:
        r, p = head["ours_reaches_peer"], head["peer_final"]
        out.append(
            f"- **Time to the peer's final KID**: catdiff's first snapshot at or below it is at "
            f"{r['images_seen']:,} images, {_minutes(r['wall_s'])} of training as run; the peer "
            f"took {_minutes(p['wall_s'])}: ratio **{head['time_ratio']:.2f}** (target: within "
            "15 minutes). Snapshots are 48k images apart: catdiff got there at or before this."
        )
        if head.get("idle_time_ratio") is not None:
            out.append(
                f"- The same at idle-machine speed (2 threads, one run at a time): "
                f"{_minutes(r['idle_s'])} vs {_minutes(p['idle_s'])}, ratio "
                f"**{head['idle_time_ratio']:.2f}**."
            )
    if head["kid_ratio"] is not None:
        ours, theirs = head["ours_final"], head["peer_final"]
        out.append(
            f"- FID at the same point: catdiff {ours['fid']:.3g} vs diffusers {theirs['fid']:.3g}, "
            f"ratio {ours['fid'] / theirs['fid']:.2f}."
        )
        if real is not None:
            out.append(
                f"- For scale: the held-out real faces score KID {real['kid']['mean']:.2g} ± "
                f"{real['kid']['std']:.2g} and FID {real['fid']:.2g}. A KID within that spread "
                "is as close to the training faces as real faces are: the metric cannot resolve "
                "a ratio between two such values."
            )
    for why in head["why"]:
        out.append(f"- Not measured yet: {why}.")
    equal = at_equal_images(runs)
    if equal:
        out += ["", "KID at equal images seen (catdiff / diffusers; lower is better):", ""]
        out += _table(
            ["images seen", "diffusers KID", "catdiff KID", "catdiff / diffusers"],
            [
                [
                    f"{r['images_seen']:,}",
                    f"{r['peer']['mean']:.4g} ± {r['peer']['std']:.2g}",
                    f"{r['ours']['mean']:.4g} ± {r['ours']['std']:.2g}",
                    f"{r['ratio']:.2f}",
                ]
                for r in equal
            ],
        )
    out += ["", setup, "", "## Results", ""]
    rows = [_row(line) for lines in runs.values() for line in lines[-1:]]
    if real is not None:
        rows.append(_row(real))
    out += _table(HEADER, rows)
    out += [
        "",
        "Where n reads '× k seeds', the snapshot was sampled at k seeds: KID and FID are the "
        "means, the ± is the std across the seeds, the per-seed FIDs are in brackets.",
        "",
        "Copying: the share of samples whose nearest training face (mirrors included) is closer "
        "than 95% of held-out real faces are to theirs; held-out faces score 5% by construction, "
        "so a rate well above 5% means copying.",
        "",
        "Detail: the samples' mean squared Laplacian over the training faces' "
        "(catdiff.metrics.detail); below 1 the samples are smoother than the faces.",
        "",
        "### Every snapshot",
        "",
    ]
    out += _table(HEADER, [_row(line) for lines in runs.values() for line in lines])
    out += ["", "## Figures", ""]
    for name, (file, caption) in figures.items():
        out += [f"### {name}", "", f"![{name}](figures/{file})", "", caption, ""]
    return "\n".join(out) + "\n"


def write_report(
    scores_path: Path,
    out: Path,
    train: torch.Tensor | None,
    setup: str = "",
    budget: int = BUDGET,
) -> Path:
    """REPORT.md and figures/ in ``out``; reads ``speed.json`` beside the scores if present."""
    scores = read_scores(scores_path)
    runs = curves(scores)
    speed_path = scores_path.parent / "speed.json"
    speed = json.loads(speed_path.read_text()) if speed_path.is_file() else None
    add_idle_time(runs, speed)
    real = real_reference(scores)
    head = headline(runs, budget)
    samples_dir = scores_path.parent / "samples"
    figures: dict[str, tuple[str, str]] = {}
    fig_dir = out / "figures"
    if runs:
        figures["KID against images seen"] = (
            "kid_vs_images.png",
            kid_curves(runs, real, "images_seen", fig_dir / "kid_vs_images.png"),
        )
        figures["KID against training wall time"] = (
            "kid_vs_wall.png",
            kid_curves(runs, real, "wall_s", fig_dir / "kid_vs_wall.png"),
        )
        if speed:
            figures["KID against training time at idle-machine speed"] = (
                "kid_vs_idle_time.png",
                kid_curves(runs, real, "idle_s", fig_dir / "kid_vs_idle_time.png"),
            )
        caption = detail_vs_kid(runs, real, budget, fig_dir / "detail_vs_kid.png")
        if caption:
            figures["KID against fine detail, every final"] = ("detail_vs_kid.png", caption)
        caption = sample_grids(runs, samples_dir, fig_dir / "samples.png")
        if caption:
            figures["Samples side by side"] = ("samples.png", caption)
        if train is not None:
            caption = nearest_pairs(runs, samples_dir, train, fig_dir / "nearest.png")
            if caption:
                figures["Closest samples to the training set"] = ("nearest.png", caption)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "REPORT.md"
    path.write_text(markdown(runs, real, head, figures, setup))
    return path


@one_line_errors
def main(argv: list[str] | None = None) -> None:
    from experiments.vs_diffusers.data import training_images

    options = {
        "scores": None,
        "out": None,
        "setup": None,
        "budget": BUDGET,
        "data": "catfaces",
        "data_root": None,
    }
    opts = parse(argv, options, "experiments.vs_diffusers.report", required=["scores", "out"])
    train = training_images(opts["data_root"], opts["data"])["train"]
    setup = Path(opts["setup"]).read_text() if opts["setup"] else ""
    print(write_report(Path(opts["scores"]), Path(opts["out"]), train, setup, opts["budget"]))


if __name__ == "__main__":
    main()
