"""The images both recipes train on and are scored against: catdiff's own splits."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from catdiff.errors import UserError
from catdiff.evaluate import load_run_images

CONF_DATA = Path(__file__).resolve().parents[2] / "conf" / "data"


def data_config(data: str = "catfaces", data_root: str | None = None) -> dict[str, Any]:
    """conf/data/<data>.yaml as catdiff.train resolves it (paths.data_dir, seed 0)."""
    path = CONF_DATA / f"{data}.yaml"
    if not path.is_file():
        choices = ", ".join(sorted(p.stem for p in CONF_DATA.glob("*.yaml")))
        raise UserError(f"data={data} is not in conf/data ({choices})")
    data_dir = os.environ.get("CATDIFF_DATA_DIR", "data")
    cfg = OmegaConf.create({"paths": {"data_dir": data_dir}, "seed": 0, "data": _load(path)})
    out = OmegaConf.to_container(cfg.data, resolve=True)
    if data_root:
        out["root"] = data_root
    return out


def _load(path: Path) -> Any:
    """A conf/data file with its ``defaults`` list (other conf/data files) merged under it."""
    own = OmegaConf.load(path)
    bases = [_load(CONF_DATA / f"{name}.yaml") for name in own.pop("defaults", [])]
    return OmegaConf.merge(*bases, own)


def training_images(
    data_root: str | None = None, data: str = "catfaces"
) -> dict[str, torch.Tensor]:
    """{"train", "test"}: uint8 (N, 1, 28, 28) splits, the same ones catdiff.train uses."""
    return load_run_images(data_config(data, data_root), None)
