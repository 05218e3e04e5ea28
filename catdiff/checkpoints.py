"""Reading a catdiff checkpoint back into (model, diffusion, image shape), without the run's
config files: a checkpoint carries its own resolved config (``catdiff.config``, written by
the training module) next to the raw and EMA weights.

Read with ``torch.load(weights_only=True)``: tensors and plain containers only, so a file
from elsewhere cannot run code. Used by ``catdiff.sample``, ``catdiff.evaluate`` and the
comparisons under experiments/.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from omegaconf import OmegaConf

from catdiff.config import build
from catdiff.errors import UserError

WEIGHTS = ("ema", "raw")


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
    """Rebuild (model in eval mode, diffusion, image_shape) from a checkpoint's stored config;
    ``weights``: ``ema`` (the average training keeps for sampling) or ``raw``."""
    if weights not in WEIGHTS:
        raise UserError(f"weights={weights} must be ema or raw")
    cfg = OmegaConf.create(ckpt["catdiff"]["config"])
    model = build(cfg.model, "model")
    diffusion = build(cfg.diffusion, "diffusion")
    prefix = "ema.model." if weights == "ema" else "model."
    state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    model.load_state_dict(state)
    return model.eval(), diffusion, tuple(ckpt["catdiff"]["image_shape"])
