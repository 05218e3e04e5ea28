"""Sample cats from a checkpoint:
``python -m catdiff.sample ckpt=PATH n=64 sampler=ddim steps=50 seed=0 out=DIR``.

Writes ``DIR/grid.png`` (all samples), ``DIR/zoom.png`` (the first few, nearest-neighbour x8,
the seed's "zoom on results"), ``DIR/trajectory.png`` (x_t at a few t for a few samples, then
x_0) and ``DIR/images/0000.png ...`` (one PNG per sample at model resolution).
Options and defaults: conf/sample.yaml. The checkpoint carries its own config, so sampling
needs no other file; it is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from catdiff.cli import parse_options, run_main
from catdiff.config import build
from catdiff.diffusion import DDIMSampler, DDPMSampler, DPMSolverSampler, sample
from catdiff.errors import UserError
from catdiff.files import load_user_file
from catdiff.images import grid, save_png, to_uint8, trajectory_grid, zoom

CONF = Path(__file__).resolve().parents[1] / "conf" / "sample.yaml"


def parse_args(argv: list[str]) -> DictConfig:
    """``key=value`` arguments over conf/sample.yaml; unknown keys and bad types are errors."""
    return parse_options(argv, CONF)


def load_checkpoint(path: str | Path) -> dict:
    """Read a catdiff checkpoint safely (tensors and plain containers only)."""
    ckpt = load_user_file(path, "ckpt", "catdiff checkpoint")
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


class CastModel(torch.nn.Module):
    """``model`` with its weights cast once to ``dtype`` (not per call, as autocast does): x goes
    in as ``dtype`` and the output comes back as float32, so the sampler's own arithmetic (x_t,
    the x0 estimate, the solver's history) stays in float32."""

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model = model.to(dtype)
        self.dtype = dtype

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.dtype), t).float()


def with_precision(
    model: torch.nn.Module, precision: str, device: torch.device
) -> tuple[torch.nn.Module, str]:
    """(the network to sample with, the precision chosen): ``auto`` is bf16 where the hardware
    runs it natively (a CUDA GPU with bf16, a CPU with AVX-512 BF16 or AMX), else fp32."""
    if precision == "auto":  # the same hardware check as training's trainer.precision=auto
        from catdiff.lightning.precision import auto_precision

        precision = "bf16" if auto_precision(device.type) == "bf16-mixed" else "fp32"
    if precision == "fp32":
        return model, precision
    if precision == "bf16":
        return CastModel(model, torch.bfloat16), precision
    raise UserError(f"precision={precision} must be fp32, bf16 or auto")


def make_sampler(cfg: DictConfig) -> DDPMSampler | DDIMSampler | DPMSolverSampler:
    if cfg.sampler == "ddpm":
        return DDPMSampler(sigma=cfg.sigma, clip_x0=cfg.clip_x0)
    # spacing null (or absent): the sampler's own default, trailing for DDIM, logsnr for DPM-Solver
    spacing = {"spacing": cfg.spacing} if cfg.get("spacing") is not None else {}
    if cfg.sampler == "ddim":
        return DDIMSampler(
            steps=cfg.steps,
            eta=cfg.eta,
            clip_x0=cfg.clip_x0,
            rederive_eps=cfg.get("rederive_eps", True),
            **spacing,
        )
    if cfg.sampler == "dpm_solver":
        return DPMSolverSampler(
            steps=cfg.steps, clip_x0=cfg.clip_x0, sde=cfg.get("sde", False), **spacing
        )
    raise UserError(f"sampler={cfg.sampler} must be ddpm, ddim or dpm_solver")


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


def generate(
    sampler: DDPMSampler | DDIMSampler,
    model: torch.nn.Module,
    diffusion: torch.nn.Module,
    n: int,
    shape: tuple[int, ...],
    seed: int,
    batch_size: int,
    device: torch.device,
    record: list[int] | tuple[int, ...] = (),
) -> tuple[torch.Tensor, dict[int, torch.Tensor], float]:
    """n samples as uint8 (n, C, H, W) on the CPU, x_t at ``record`` (first chunk), seconds.

    One seed per chunk of ``batch_size``, derived from (seed, chunk index): the same call gives
    the same images, and the first k images do not depend on n.
    """
    start = time.perf_counter()
    chunks, trajectory = [], {}
    for i, first in enumerate(range(0, n, batch_size)):
        count = min(batch_size, n - first)
        result = sample(
            sampler,
            model,
            diffusion,
            count,
            shape,
            seed=seed * 1_000_003 + i,
            device=device,
            record=record if i == 0 else (),
            progress=True,
        )
        chunks.append(to_uint8(result.x0).cpu())
        trajectory = trajectory or {t: x.cpu() for t, x in result.trajectory.items()}
    return torch.cat(chunks), trajectory, time.perf_counter() - start


def run(cfg: DictConfig) -> Path:
    if cfg.n < 1 or cfg.batch_size < 1:
        raise UserError("n and batch_size must be at least 1")
    ckpt = load_checkpoint(cfg.ckpt)
    model, diffusion, shape = load_model(ckpt, cfg.weights)
    sampler = make_sampler(cfg)
    device = pick_device(cfg.device)
    model, diffusion = model.to(device), diffusion.to(device)
    model, precision = with_precision(model, cfg.precision, device)
    label = cfg.sampler + (f"-{cfg.steps}" if cfg.sampler != "ddpm" else "")
    out = (
        Path(cfg.out)
        if cfg.out
        else Path(cfg.ckpt).resolve().parents[1] / "samples" / f"{label}-seed{cfg.seed}"
    )
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
    nfe = sampler.nfe(diffusion)
    print(
        f"{cfg.n} samples ({label}, {nfe} network evaluations each, {precision}) in "
        f"{seconds:.1f} s on {device}: {out}"
    )
    return out


def main(argv: list[str] | None = None) -> None:
    run_main(run, CONF, argv)


if __name__ == "__main__":
    main()
