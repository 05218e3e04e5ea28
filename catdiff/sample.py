"""Sample cats from a checkpoint:
``python -m catdiff.sample ckpt=PATH n=64 sampler=ddim sampler.steps=50 seed=0 out=DIR``.

Writes ``DIR/grid.png``, ``DIR/zoom.png`` (the first few, x8), ``DIR/trajectory.png`` (x_t at
a few t, then x_0) and ``DIR/images/0000.png ...``; options: conf/sample.yaml. The checkpoint
carries its own config, so sampling needs no other file.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from catdiff.checkpoints import load_checkpoint, load_model
from catdiff.cli import run_main, sampler_name
from catdiff.config import build
from catdiff.diffusion.generate import (
    generate,
    pick_device,
    trajectory_timesteps,
    with_precision,
)
from catdiff.errors import UserError
from catdiff.files import writable_folder
from catdiff.images import grid, save_png, to_uint8, trajectory_grid, zoom
from catdiff.validate import check_steps_against_T


def sample_label(sampler: object) -> str:
    """``<sampler>[-<steps>]`` (``ddim-50``, ``ddpm``): the default sample folder's stem."""
    steps = getattr(sampler, "steps", None)
    return sampler_name(sampler) + (f"-{steps}" if steps is not None else "")


def run(cfg: DictConfig) -> Path:
    if cfg.n < 1 or cfg.batch_size < 1:
        raise UserError("n and batch_size must be at least 1")
    ckpt = load_checkpoint(cfg.ckpt)
    model, diffusion, shape = load_model(ckpt, cfg.weights)
    check_steps_against_T(cfg, diffusion.T)
    sampler = build(cfg.sampler, "sampler")
    device = pick_device(cfg.device)
    model, diffusion = model.to(device), diffusion.to(device)
    model, precision = with_precision(model, cfg.precision, device)
    label = sample_label(sampler)
    out = (
        Path(cfg.out)
        if cfg.out
        else Path(cfg.ckpt).resolve().parents[1] / "samples" / f"{label}-seed{cfg.seed}"
    )
    writable_folder(out, "out")  # before the sampling, not after it
    record = trajectory_timesteps(sampler.timesteps(diffusion))

    images, trajectory, seconds = generate(
        sampler, model, diffusion, cfg.n, shape, cfg.seed, cfg.batch_size, device, record
    )
    trajectory = {t: x[: cfg.trajectory_n] for t, x in trajectory.items()}

    save_png(grid(images), out / "grid.png")
    save_png(zoom(grid(images[: cfg.zoom_n]), cfg.zoom), out / "zoom.png")
    save_png(
        trajectory_grid(
            {t: to_uint8(x) for t, x in trajectory.items()}, images, n=cfg.trajectory_n
        ),
        out / "trajectory.png",
    )
    for j, image in enumerate(images):
        save_png(grid(image[None], pad=0), out / "images" / f"{j:04d}.png")
    for stale in (out / "images").glob("*.png"):  # an earlier, larger run into the same out=
        if stale.stem.isdigit() and int(stale.stem) >= len(images):
            stale.unlink()
    nfe = sampler.nfe(diffusion)
    print(
        f"{cfg.n} samples ({label}, {nfe} network evaluations each, {precision}) in "
        f"{seconds:.1f} s on {device}: {out}"
    )
    return out


def main(argv: list[str] | None = None) -> None:
    run_main(run, "sample", argv)


if __name__ == "__main__":
    main()
