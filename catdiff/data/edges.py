"""Sobel edge maps (``data.edges``), computed batched once for the whole decoded set."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from catdiff.errors import UserError

EDGE_MODES = ("none", "sobel", "sobel+gray")


def data_channels(channels: int, edges: str) -> int:
    """Channels the model sees: the image's, or 1 for Sobel edges, or 2 for gray + edges."""
    return {"sobel": 1, "sobel+gray": 2}.get(edges, channels)


# Gx responds to intensity increasing to the right; Gy (its transpose) downwards.
SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
SOBEL_Y = SOBEL_X.T.contiguous()

# Largest Sobel magnitude a [0, 1] image can reach: sqrt(4^2 + 2^2), at a patch such as
# [[0, 0, 1], [0, ., 1], [0, 1, 1]]. (4*sqrt(2) bounds it but is never reached: |gx| = 4
# and |gy| = 4 would need the top-right pixel to be both 1 and 0.)
SOBEL_MAX = math.sqrt(20.0)


def sobel(x: torch.Tensor) -> torch.Tensor:
    """Sobel gradient magnitude sqrt(gx^2 + gy^2) of a float (B, C, H, W), per channel.

    Replicate padding (``scipy.ndimage.sobel(mode="nearest")``), so a flat border gives no
    spurious edge. For x in [0, 1] the values lie in [0, :data:`SOBEL_MAX`].
    """
    if not x.is_floating_point() or x.ndim != 4:
        raise TypeError(f"sobel wants a float (B, C, H, W) tensor, got {x.dtype} {tuple(x.shape)}")
    b, c, h, w = x.shape
    weight = torch.stack([SOBEL_X, SOBEL_Y])[:, None].to(dtype=x.dtype, device=x.device)
    padded = F.pad(x.reshape(b * c, 1, h, w), (1, 1, 1, 1), mode="replicate")
    g = F.conv2d(padded, weight)  # (B*C, 2, H, W): gx, gy
    return torch.sqrt(g[:, 0] ** 2 + g[:, 1] ** 2).reshape(b, c, h, w)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a float (B, C, H, W), sigma in pixels, radius 3 sigma,
    replicate padding; ``sigma <= 0`` returns ``x`` unchanged."""
    if sigma <= 0:
        return x
    b, c, h, w = x.shape
    radius = max(1, math.ceil(3.0 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    y = x.reshape(b * c, 1, h, w)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
    return y.reshape(b, c, h, w)


def apply_edges(
    images: torch.Tensor, mode: str, blur_sigma: float = 0.0, chunk_size: int = 512
) -> torch.Tensor:
    """Grey uint8 images (N, 1, H, W) -> the model's channels: "sobel" the edge magnitude,
    "sobel+gray" grey and edges (N, 2, H, W). Fixed normalisation, not per image: pixels in
    [0, 1], the magnitude over :data:`SOBEL_MAX`, to 0..255, so faint images keep faint edges.
    ``blur_sigma`` pre-blurs (suppresses JPEG blocks and fur, keeps the outline)."""
    if mode not in EDGE_MODES:
        raise UserError(
            f"data.edges={mode!r} is not an edge mode; use one of {', '.join(EDGE_MODES)}"
        )
    if not blur_sigma >= 0:  # also catches NaN
        raise UserError(f"data.edge_blur={blur_sigma} must be >= 0 (0 = no blur before Sobel)")
    if mode == "none":
        return images
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise TypeError(
            f"apply_edges wants a uint8 (N, 1, H, W) tensor, got {images.dtype} {tuple(images.shape)}"
        )
    if images.shape[1] != 1:
        raise UserError(
            f"data.edges={mode} needs grey images (data.channels=1), got {images.shape[1]} channels"
        )
    edges = torch.empty_like(images)
    for start in range(0, images.shape[0], chunk_size):
        chunk = images[start : start + chunk_size].float() / 255.0
        magnitude = sobel(gaussian_blur(chunk, blur_sigma))
        edges[start : start + chunk_size] = (
            (magnitude * (255.0 / SOBEL_MAX)).round_().clamp_(0, 255).to(torch.uint8)
        )
    if mode == "sobel":
        return edges
    return torch.cat([images, edges], dim=1)
