"""A catdiff checkpoint back into (model, diffusion, image shape) from the resolved config it
carries next to the raw and EMA weights; read with ``weights_only=True``."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from catdiff.config import build
from catdiff.errors import UserError
from catdiff.files import load_user_file

WEIGHTS = ("ema", "raw")


def load_checkpoint(path: str | Path, key: str = "ckpt") -> dict:
    """A catdiff checkpoint, read safely; anything else is one line naming ``key``."""
    ckpt = load_user_file(path, key, "catdiff checkpoint")
    entry = ckpt.get("catdiff") if isinstance(ckpt, dict) else None
    if (
        not isinstance(entry, dict)
        or not isinstance(entry.get("config"), dict)
        or not isinstance(ckpt.get("state_dict"), dict)
    ):
        raise UserError(
            f"{key}={path} is not a catdiff checkpoint (no 'catdiff' entry): pass checkpoints/last.ckpt of a run"
        )
    return ckpt


# What a tuned model inherits from its teacher, and what its data must share with it.
_TEACHER_GROUPS = ("model", "diffusion")
_TEACHER_DATA = ("image_size", "channels", "edges")


def adopt_teacher(cfg: DictConfig) -> dict[str, torch.Tensor] | None:
    """``teacher=PATH``: the teacher checkpoint's model and diffusion config replace ``cfg``'s
    (so the config.yaml of the tuned run says what it is), and its EMA weights are returned for
    the new run to start from. None without a teacher; one line naming ``teacher`` when the
    file is not a catdiff checkpoint or its data space (image size, channels, edges) differs."""
    if not cfg.get("teacher"):
        return None
    ckpt = load_checkpoint(cfg.teacher, key="teacher")
    stored = ckpt["catdiff"]["config"]
    differ = [
        f"data.{k} {stored.get('data', {}).get(k)!r} (teacher) vs {cfg.data.get(k)!r}"
        for k in _TEACHER_DATA
        if stored.get("data", {}).get(k) != cfg.data.get(k)
    ]
    if differ:
        raise UserError(f"teacher={cfg.teacher} was trained on other data: {', '.join(differ)}")
    for group in _TEACHER_GROUPS:
        if not isinstance(stored.get(group), dict):
            raise UserError(f"teacher={cfg.teacher} has no stored {group} config")
        cfg[group] = OmegaConf.create(stored[group])
    prefix = "ema.model."
    return {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}


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
