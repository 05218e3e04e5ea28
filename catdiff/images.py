"""Model tensors in [-1, 1] as uint8 pictures: grids, zooms, PNG files. Channels that are not
RGB (gray + Sobel edges) are shown side by side."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from catdiff.files import write_with


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Map model space [-1, 1] to uint8 [0, 255] (values outside are clipped). Shape kept."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def channels_side_by_side(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, 1, H, C*W) for C not in (1, 3): each channel its own gray panel."""
    if x.shape[1] in (1, 3):
        return x
    n, c, h, w = x.shape
    return x.permute(0, 2, 1, 3).reshape(n, 1, h, c * w)


def grid(images: torch.Tensor, nrow: int | None = None, pad: int = 1) -> np.ndarray:
    """Tile images (N, C, H, W) into one uint8 (H', W') or (H', W', 3) array, ``nrow`` per
    row (default: about square), ``pad`` black pixels between tiles."""
    if images.dtype != torch.uint8:
        images = to_uint8(images)
    images = channels_side_by_side(images.cpu())
    n, c, h, w = images.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    out = torch.zeros(c, rows * (h + pad) + pad, nrow * (w + pad) + pad, dtype=torch.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        out[:, y : y + h, x : x + w] = images[i]
    arr = out.permute(1, 2, 0).numpy()
    return arr[..., 0] if c == 1 else arr


def zoom(image: np.ndarray, factor: int = 8) -> np.ndarray:
    """Nearest-neighbour enlargement (the seed's "zoom on results"): each pixel a factor^2 block."""
    return image.repeat(factor, axis=0).repeat(factor, axis=1)


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Write a uint8 (H, W) or (H, W, 3) array as PNG, atomically."""
    path = Path(path)
    picture = Image.fromarray(np.ascontiguousarray(image))
    write_with(path, lambda f: picture.save(f, format="PNG"), durable=False)
    return path


def trajectory_grid(
    trajectory: dict[int, torch.Tensor], final: torch.Tensor, n: int = 8
) -> np.ndarray:
    """One row per sample: x_t at the recorded t (noisiest first), then the final x_0."""
    steps = sorted(trajectory, reverse=True)
    n = min([n, len(final)] + [len(trajectory[t]) for t in steps])
    columns = [trajectory[t][:n] for t in steps] + [final[:n].cpu()]
    rows = torch.stack(columns, dim=1)  # (n, len(columns), C, H, W)
    return grid(rows.flatten(0, 1), nrow=len(columns))
