"""Exact-duplicate removal and a deterministic, hash-based train/val/test split.

Duplicates are found on decoded pixels, and dropped *before* splitting, so train and
validation never share an image.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from catdiff.errors import UserError


def image_key(image: torch.Tensor | np.ndarray) -> str:
    """SHA-1 hex digest of one uint8 image (C, H, W): its shape, then its pixel bytes."""
    pixels = np.ascontiguousarray(image.cpu().numpy() if torch.is_tensor(image) else image)
    h = hashlib.sha1(("x".join(map(str, pixels.shape)) + ":").encode())
    h.update(pixels.data)
    return h.hexdigest()


def unique_indices(images: torch.Tensor) -> tuple[list[int], list[str]]:
    """Indices of the first occurrence of each distinct image (N, C, H, W), and their keys."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise TypeError(
            f"drop_duplicates wants a uint8 (N, C, H, W) tensor, got {images.dtype} {tuple(images.shape)}"
        )
    pixels = images.cpu().contiguous().numpy()
    first: dict[str, int] = {}
    for i in range(pixels.shape[0]):
        first.setdefault(image_key(pixels[i]), i)
    return list(first.values()), list(first)


def drop_duplicates(images: torch.Tensor) -> tuple[torch.Tensor, list[str], int]:
    """``(unique, keys, dropped)``: the distinct uint8 images (N', C, H, W) in their order
    (first occurrence kept), their :func:`image_key` and ``N - N'``."""
    keep, keys = unique_indices(images)
    dropped = images.shape[0] - len(keep)
    unique = images[keep] if dropped else images
    return unique, keys, dropped


def file_sha1(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """SHA-1 hex digest of a file's bytes (finds byte-identical copies without decoding)."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def _unit_interval(key: str) -> float:
    """Map a key to [0, 1) through SHA-1 (stable across runs, machines and Python's hash seed)."""
    return int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big") / 2.0**64


def split_by_hash(
    keys: list[str], val_fraction: float = 0.05, test_fraction: float = 0.0
) -> dict[str, list[int]]:
    """Split items by the hash u in [0, 1) of their key: u < val_fraction is "val",
    u >= 1 - test_fraction "test", the rest "train". An item's split depends only on its key,
    so adding files never moves others, and one fraction never moves the other split."""
    if not 0.0 <= val_fraction < 1.0:
        raise UserError(f"data.val_fraction={val_fraction} must be in [0, 1), e.g. 0.05")
    if not 0.0 <= test_fraction < 1.0:
        raise UserError(f"data.test_fraction={test_fraction} must be in [0, 1), e.g. 0.0")
    if val_fraction + test_fraction >= 1.0:
        raise UserError(
            f"data.val_fraction={val_fraction} + data.test_fraction={test_fraction} must be "
            "below 1 so that some images remain for training"
        )
    splits: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for i, key in enumerate(keys):
        u = _unit_interval(key)
        if u < val_fraction:
            splits["val"].append(i)
        elif u >= 1.0 - test_fraction:
            splits["test"].append(i)
        else:
            splits["train"].append(i)
    return splits
