"""A catdiff checkpoint back into (model, diffusion, image shape) from the resolved config it
carries next to the raw and EMA weights; read with ``weights_only=True``."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import OmegaConf

from catdiff.config import build
from catdiff.errors import UserError
from catdiff.files import load_user_file

WEIGHTS = ("ema", "raw")


def load_checkpoint(path: str | Path) -> dict:
    """A catdiff checkpoint, read safely; anything else is one line naming ``ckpt``."""
    ckpt = load_user_file(path, "ckpt", "catdiff checkpoint")
    entry = ckpt.get("catdiff") if isinstance(ckpt, dict) else None
    if (
        not isinstance(entry, dict)
        or not isinstance(entry.get("config"), dict)
        or not isinstance(ckpt.get("state_dict"), dict)
    ):
        raise UserError(
            f"ckpt={path} is not a catdiff checkpoint (no 'catdiff' entry): pass checkpoints/last.ckpt of a run"
        )
    return ckpt


def load_model(
    ckpt: dict, weights: str = "ema"
) -> tuple[torch.nn.Module, torch.nn.Module, tuple[int, ...]]:
    """(model in eval mode with the ``ema`` or ``raw`` weights, diffusion, image_shape)."""
    if weights not in WEIGHTS:
        raise UserError(f"weights={weights} must be ema or raw")
    try:
        cfg = OmegaConf.create(ckpt["catdiff"]["config"])
        model = build(cfg.model, "model")
        diffusion = build(cfg.diffusion, "diffusion")
        prefix = "ema.model." if weights == "ema" else "model."
        state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
        model.load_state_dict(state)
        shape = tuple(int(d) for d in ckpt["catdiff"]["image_shape"])
    except UserError as e:  # a stored config no longer valid: edited, or from elsewhere
        raise UserError(f"the checkpoint's stored config is not usable: {e}") from None
    except Exception as e:  # noqa: BLE001 - weights that do not fit the stored config
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise UserError(
            f"ckpt's weights do not match its own stored config (an edited checkpoint?): "
            f"{type(e).__name__}: {first}"
        ) from None
    return model.eval(), diffusion, shape
