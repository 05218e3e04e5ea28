"""Data pipeline throughput: decoding image files (cold) and drawing training batches (warm).

Cold is ``list_images`` + ``decode_images`` on a folder (the cat faces when present, else
synthetic sketches written as PNGs), what ``CatDataModule.setup`` does once per run. Warm is
the per-step path: a batch drawn from the in-memory uint8 tensor by the datamodule's
``TensorBatches``, then ``on_after_batch_transfer`` (uint8 -> float in [-1, 1], random flip).
(``CatDataModule`` also caches decoded images on disk; cold here means no cache.)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from catdiff.data import decode_images, list_images, synthetic_cats
from experiments.bench.train_speed import datamodule_for, endless_batches


def image_files(root: Path | None, limit: int, tmp: Path) -> tuple[list[Path], str]:
    """Up to ``limit`` image files from ``root``, or synthetic 64 px PNGs written under ``tmp``."""
    if root is not None and root.is_dir():
        return list_images(root)[:limit], str(root)
    sketches = synthetic_cats(limit, 64, seed=0)
    paths = []
    for i, pixels in enumerate(sketches):
        path = tmp / f"{i}.png"
        Image.fromarray(pixels[0].numpy()).save(path)
        paths.append(path)
    return paths, f"{limit} synthetic 64 px PNGs in a temp dir"


def tiled(images: torch.Tensor, n: int) -> torch.Tensor:
    """``images`` repeated until there are at least ``n`` of them."""
    return images.repeat(-(-n // len(images)), *([1] * (images.ndim - 1)))


def decode_fn(paths: list[Path], image_size: int = 28) -> Callable[[], torch.Tensor]:
    """One call decodes every file in ``paths`` to (N, 1, image_size, image_size) uint8."""
    return lambda: decode_images(paths, image_size, channels=1)[0]


def warm_fn(images: torch.Tensor, batch_size: int, batches: int) -> Callable[[], None]:
    """One call draws ``batches`` training batches and applies the uint8 -> [-1, 1] + flip."""
    next_batch = endless_batches(
        datamodule_for(tiled(images, (batches + 1) * batch_size), batch_size)
    )

    def run() -> None:
        for _ in range(batches):
            next_batch()

    return run
