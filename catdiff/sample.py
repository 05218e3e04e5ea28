"""Sample cats from a checkpoint:
``python -m catdiff.sample ckpt=PATH n=64 sampler=ddim steps=50 seed=0 out=DIR``.

Writes ``DIR/grid.png`` (all samples), ``DIR/zoom.png`` (the first few, nearest-neighbour x8,
the seed's "zoom on results"), ``DIR/trajectory.png`` (x_t at a few t for a few samples, then
x_0) and ``DIR/images/0000.png ...`` (one PNG per sample at model resolution).
Options and defaults: conf/sample.yaml. The checkpoint carries its own config, so sampling
needs no other file; it is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import pickle
import sys
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from catdiff.config import build
from catdiff.diffusion import DDIMSampler, DDPMSampler, sample
from catdiff.errors import UserError
from catdiff.images import grid, save_png, to_uint8, trajectory_grid, zoom

CONF = Path(__file__).resolve().parents[1] / "conf" / "sample.yaml"


def parse_args(argv: list[str]) -> DictConfig:
    """``key=value`` arguments over conf/sample.yaml; unknown keys and bad types are errors."""
    defaults = OmegaConf.load(CONF)
    OmegaConf.set_struct(defaults, True)
    try:
        cfg = OmegaConf.merge(defaults, OmegaConf.from_dotlist(argv))
        OmegaConf.to_container(cfg, throw_on_missing=True)
    except ConfigKeyError as e:
        raise UserError(
            f"unknown option {e.key!r}: options are {', '.join(defaults)} (conf/sample.yaml)"
        ) from None
    except OmegaConfBaseException as e:
        first = str(e).strip().splitlines()[0]
        raise UserError(f"{first} (see conf/sample.yaml)") from None
    for key, default in OmegaConf.to_container(
        defaults
    ).items():  # defaults' types are the options' types
        value = cfg[key]
        expected = (int, float) if isinstance(default, float) else type(default)
        if (
            default is not None
            and default != "???"
            and (
                not isinstance(value, expected)
                or isinstance(value, bool) is not isinstance(default, bool)
            )
        ):
            raise UserError(
                f"{key}={value!r} must be a {type(default).__name__} (conf/sample.yaml)"
            )
    return cfg


def load_checkpoint(path: str | Path) -> dict:
    """Read a catdiff checkpoint safely (tensors and plain containers only)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"ckpt={path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError):
        raise UserError(
            f"ckpt={path} is not a catdiff checkpoint (torch.load with weights_only=True cannot read it)"
        ) from None
    if not isinstance(ckpt, dict) or "catdiff" not in ckpt or "state_dict" not in ckpt:
        raise UserError(
            f"ckpt={path} is not a catdiff checkpoint (no 'catdiff' entry): pass checkpoints/last.ckpt of a run"
        )
    return ckpt


def load_model(
    ckpt: dict, weights: str = "ema"
) -> tuple[torch.nn.Module, torch.nn.Module, tuple[int, ...]]:
    """Rebuild (model, diffusion, image_shape) from a checkpoint's stored config and weights."""
    if weights not in ("ema", "raw"):
        raise UserError(f"weights={weights} must be ema or raw")
    cfg = OmegaConf.create(ckpt["catdiff"]["config"])
    model = build(cfg.model, "model")
    diffusion = build(cfg.diffusion, "diffusion")
    prefix = "ema.model." if weights == "ema" else "model."
    state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    model.load_state_dict(state)
    return model.eval(), diffusion, tuple(ckpt["catdiff"]["image_shape"])


def make_sampler(cfg: DictConfig) -> DDPMSampler | DDIMSampler:
    if cfg.sampler == "ddpm":
        return DDPMSampler(sigma=cfg.sigma, clip_x0=cfg.clip_x0)
    if cfg.sampler == "ddim":
        return DDIMSampler(steps=cfg.steps, eta=cfg.eta, clip_x0=cfg.clip_x0)
    raise UserError(f"sampler={cfg.sampler} must be ddpm or ddim")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA device is available: use device=cpu")
    return torch.device(name)


def trajectory_timesteps(timesteps: list[int], count: int = 6) -> list[int]:
    """``count`` evenly spaced timesteps the chain visits, noisiest first."""
    picks = torch.linspace(0, len(timesteps) - 1, count).round().long().unique().tolist()
    return [timesteps[i] for i in picks]


def run(cfg: DictConfig) -> Path:
    if cfg.n < 1 or cfg.batch_size < 1:
        raise UserError("n and batch_size must be at least 1")
    ckpt = load_checkpoint(cfg.ckpt)
    model, diffusion, shape = load_model(ckpt, cfg.weights)
    sampler = make_sampler(cfg)
    device = pick_device(cfg.device)
    model, diffusion = model.to(device), diffusion.to(device)
    label = cfg.sampler + (f"-{cfg.steps}" if cfg.sampler == "ddim" else "")
    out = (
        Path(cfg.out)
        if cfg.out
        else Path(cfg.ckpt).resolve().parents[1] / "samples" / f"{label}-seed{cfg.seed}"
    )
    record = trajectory_timesteps(sampler.timesteps(diffusion))

    start = time.perf_counter()
    chunks, trajectory = [], {}
    for i, first in enumerate(range(0, cfg.n, cfg.batch_size)):
        count = min(cfg.batch_size, cfg.n - first)
        # One seed per chunk, derived from (seed, chunk): the same call gives the same images.
        result = sample(
            sampler,
            model,
            diffusion,
            count,
            shape,
            seed=cfg.seed * 1_000_003 + i,
            device=device,
            record=record if i == 0 else (),
            progress=True,
        )
        chunks.append(to_uint8(result.x0).cpu())
        trajectory = trajectory or {t: x[: cfg.trajectory_n] for t, x in result.trajectory.items()}
    seconds = time.perf_counter() - start
    images = torch.cat(chunks)

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
    nfe = sampler.nfe(diffusion)
    print(
        f"{cfg.n} samples ({label}, {nfe} network evaluations each) in {seconds:.1f} s on {device}: {out}"
    )
    return out


def main(argv: list[str] | None = None) -> None:
    try:
        run(parse_args(sys.argv[1:] if argv is None else argv))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
