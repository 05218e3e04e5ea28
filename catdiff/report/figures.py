"""The report's figures (matplotlib, Agg, 100 dpi): each writes a PNG and returns its caption,
or None when there was nothing to draw."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from catdiff.files import write_with
from catdiff.report.runs import Arm, Run

DPI = 100
ZOOM = 8
ZOOM_CELLS = 4  # samples in the zoomed strip of each arm
TRAIN_SMOOTH = 5  # running mean over this many logged train-loss values


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.size": 8,
            "axes.titlesize": 9,
            "legend.fontsize": 7,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "savefig.dpi": DPI,
        }
    )
    return plt


def _colors(n: int) -> list:
    plt = _plt()
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return [cycle[i % len(cycle)] for i in range(n)]


def _save(fig, path: Path) -> None:
    """Whole or not at all, like every file a report writes."""
    options = {"format": "png", "dpi": DPI, "bbox_inches": "tight", "metadata": {"Software": None}}
    write_with(path, lambda f: fig.savefig(f, **options))
    _plt().close(fig)


# The public names of the two helpers above, for figure code outside this package.
pyplot = _plt
save_figure = _save


def _yscale(ax, values: list[float]) -> None:
    """Log scale when the values span more than 5x, with plain tick labels; else linear."""
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    values = [v for v in values if np.isfinite(v)]
    if values and min(values) > 0 and max(values) / min(values) > 5:
        ax.set_yscale("log")
        # 1-2-5 ticks: a range inside one decade (0.1 to 0.8) still gets labelled ticks
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())


def _series(run: Run, key: str, smooth: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of a logged metric, values as a running mean over ``smooth``."""
    pairs = run.history.get(key, [])
    steps = np.array([s for s, _ in pairs], dtype=float)
    values = np.array([v for _, v in pairs], dtype=float)
    if smooth > 1:
        values = np.array(
            [values[max(0, i - smooth + 1) : i + 1].mean() for i in range(len(values))]
        )
    return steps, values


def _common_images_per_step(arms: list[Arm]) -> int | None:
    sizes = {r.images_per_step for a in arms for r in a.runs}
    return sizes.pop() if len(sizes) == 1 and None not in sizes else None


def loss_curves(arms: list[Arm], path: Path) -> str | None:
    """Train and validation (EMA weights) loss against the step, one colour per arm: mean over
    seeds, band from the lowest to the highest seed."""
    plt = _plt()
    panels = [
        ("train/loss", f"train loss (running mean of {TRAIN_SMOOTH} logged values)", TRAIN_SMOOTH),
        ("val/loss", "validation loss, EMA weights", 1),
    ]
    if not any(r.history.get(k) for a in arms for r in a.runs for k, _, _ in panels):
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    per_step = _common_images_per_step(arms)
    for ax, (key, title, smooth) in zip(axes, panels):
        drawn: list[float] = []
        for arm, color in zip(arms, _colors(len(arms))):
            series = [_series(r, key, smooth) for r in arm.runs]
            series = [(s, v) for s, v in series if len(s)]
            if not series:
                continue
            common = sorted(set.intersection(*(set(s.tolist()) for s, _ in series)))
            if len(common) >= 2:
                stack = np.stack([v[np.isin(s, common)] for s, v in series])
                drawn += stack.ravel().tolist()
                ax.plot(common, stack.mean(0), color=color, lw=1.4, label=arm.label)
                if len(series) > 1:
                    ax.fill_between(common, stack.min(0), stack.max(0), color=color, alpha=0.2)
            else:  # steps do not line up across seeds: one thin line per seed
                for i, (s, v) in enumerate(series):
                    drawn += v.tolist()
                    ax.plot(s, v, color=color, lw=0.8, label=arm.label if i == 0 else None)
        ax.set_title(title)
        ax.set_xlabel("step")
        _yscale(ax, drawn)
        if per_step:
            top = ax.secondary_xaxis(
                "top", functions=(lambda x, k=per_step: x * k, lambda x, k=per_step: x / k)
            )
            top.set_xlabel("images seen")
    axes[0].set_ylabel("loss")
    axes[0].legend(loc="best")
    fig.tight_layout()
    _save(fig, path)
    caption = "Line: mean over seeds; band: lowest to highest seed (min-max)."
    if per_step:
        caption += f" Top axis: images seen = step x {per_step} (batch x world size)."
    else:
        caption += " Arms differ in batch x world size: compare images seen in the compute table."
    return caption


def bucket_losses(arms: list[Arm], path: Path) -> str | None:
    """Final validation loss per timestep bucket (k covers t in [kT/10, (k+1)T/10))."""
    plt = _plt()
    keys = sorted(
        {k for a in arms for r in a.runs for k in r.metrics if k.startswith("final/val/loss_t")},
        key=lambda k: int(k.rsplit("_t", 1)[1]),
    )
    if not keys:
        return None
    buckets = len(keys)
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    width = 0.6 / max(1, len(arms))
    drawn: list[float] = []
    for j, (arm, color) in enumerate(zip(arms, _colors(len(arms)))):
        values = np.array([[r.metrics.get(k, np.nan) for k in keys] for r in arm.runs], dtype=float)
        mean = np.nanmean(values, 0)
        std = np.nanstd(values, 0, ddof=1) if len(arm.runs) > 1 else np.zeros(buckets)
        x = np.arange(buckets) + (j - (len(arms) - 1) / 2) * width
        drawn += (mean - std).tolist() + (mean + std).tolist()
        ax.errorbar(x, mean, yerr=std, color=color, marker="o", ms=3, lw=1, capsize=2)
        ax.plot([], [], color=color, marker="o", ms=3, label=f"{arm.label} (n={len(arm.runs)})")
    ts = {(r.config.get("diffusion") or {}).get("T") for a in arms for r in a.runs}
    T = ts.pop() if len(ts) == 1 else None
    if isinstance(T, int):
        labels = [f"{k * T // buckets}-{(k + 1) * T // buckets}" for k in range(buckets)]
        ax.set_xlabel(f"timestep bucket t (T={T}; t=0 least noise)")
    else:
        labels = [f"{k / buckets:.1f}-{(k + 1) / buckets:.1f}" for k in range(buckets)]
        ax.set_xlabel("timestep bucket t / T (t=0 least noise)")
    ax.set_xticks(np.arange(buckets), labels, rotation=30, ha="right")
    ax.set_ylabel("final validation loss (EMA)")
    _yscale(ax, drawn)
    ax.legend(loc="best")
    fig.tight_layout()
    _save(fig, path)
    return "Dot: mean over seeds; error bar: ±1 standard deviation over seeds (ddof=1)."


def read_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB" if im.mode not in ("L", "I;16", "I") else "L"))


def grid_run(arm: Arm, tag: str) -> Run | None:
    """The run whose eval grid shows the arm: the lowest seed that has one."""
    return next((r for r in arm.runs if (r.eval_dir(tag) / "grid.png").is_file()), None)


def _grid_runs(arms: list[Arm], tag: str) -> list[tuple[Arm, Run]]:
    return [(a, r) for a in arms if (r := grid_run(a, tag)) is not None]


def _cell(run: Run) -> tuple[int, int]:
    """(height, width) of one sample in catdiff's grids (non-RGB channels side by side)."""
    size = int((run.config.get("data") or {}).get("image_size") or 28)
    channels = int((run.config.get("model") or {}).get("in_channels") or 1)
    return size, size * (1 if channels in (1, 3) else channels)


def first_samples(image: np.ndarray, cell: tuple[int, int], k: int, pad: int = 1) -> np.ndarray:
    """The first k samples of a catdiff grid; the top-left corner if the geometry differs."""
    h, w = cell
    height, width = image.shape[:2]
    per_row = (width - pad) / (w + pad)
    if per_row >= 1 and per_row == int(per_row) and height >= h + 2 * pad:
        k = min(k, int(per_row))
        return image[: h + 2 * pad, : pad + k * (w + pad)]
    return image[: min(height, h + 2 * pad), : min(width, pad + k * (w + pad))]


def _show(ax, image: np.ndarray) -> None:
    if image.ndim == 2:
        ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def sample_grids(arms: list[Arm], tag: str, path: Path) -> str | None:
    """The eval grid of one run per arm (lowest seed with a grid), side by side."""
    plt = _plt()
    shown = _grid_runs(arms, tag)
    if not shown:
        return None
    images = [read_png(r.eval_dir(tag) / "grid.png") for _, r in shown]
    largest = max(max(im.shape[:2]) for im in images)
    up = max(1, 240 // largest)  # small grids: whole-pixel enlargement, never resampled
    images = [im.repeat(up, axis=0).repeat(up, axis=1) for im in images]
    side = largest * up / DPI * 1.15
    fig, axes = plt.subplots(1, len(shown), figsize=(side * len(shown), side + 0.35), squeeze=False)
    for ax, (arm, run), image in zip(axes[0], shown, images):
        _show(ax, image)
        ax.set_title(f"{arm.label}\nseed {run.seed}", fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    return f"Eval grids ({tag}) of one run per arm, the lowest seed that has one; uint8 as written."


def zoom_grids(arms: list[Arm], tag: str, path: Path) -> str | None:
    """The first few samples of each arm's grid, nearest-neighbour x8, one row per arm."""
    plt = _plt()
    shown = _grid_runs(arms, tag)
    if not shown:
        return None
    strips = [
        first_samples(read_png(run.eval_dir(tag) / "grid.png"), _cell(run), ZOOM_CELLS)
        for _, run in shown
    ]
    strips = [s.repeat(ZOOM, axis=0).repeat(ZOOM, axis=1) for s in strips]
    width = max(s.shape[1] for s in strips) / DPI
    heights = [s.shape[0] / DPI + 0.3 for s in strips]
    fig, axes = plt.subplots(
        len(strips),
        1,
        figsize=(width, sum(heights)),
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )
    for ax, (arm, run), strip in zip(axes[:, 0], shown, strips):
        _show(ax, strip)
        ax.set_title(f"{arm.label}, seed {run.seed}", fontsize=8, loc="left")
    fig.tight_layout(pad=0.3)
    _save(fig, path)
    return (
        f"The first {ZOOM_CELLS} samples of each grid above, each pixel shown as an "
        f"{ZOOM}x{ZOOM} block (nearest neighbour)."
    )
