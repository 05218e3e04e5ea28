"""Comparable image spaces, so that models trained on different inputs are compared fairly.

An edge model's FID against gray faces would measure the input change, not the quality, so
generated and reference images are both mapped into named spaces, each scored on its own:

========================  =========================  ============================
``data.edges``            ``gray`` space             ``edges`` space
========================  =========================  ============================
none (1 channel)          the samples                Sobel of the samples
sobel                     (none: no gray image)      the samples
sobel+gray (2 channels)   channel 0                  channel 1 (the model's edges)
========================  =========================  ============================

The Sobel applied to a plain model's samples is the one its edge-trained rivals learned (same
kernel, normalisation and ``data.edge_blur``). RGB runs have one space, ``rgb``.
"""

from __future__ import annotations

import torch

from catdiff.data.edges import apply_edges
from catdiff.errors import UserError


def spaces_of(
    images: torch.Tensor, edges: str = "none", channels: int = 1, edge_blur: float = 0.0
) -> dict[str, torch.Tensor]:
    """uint8 images as the run's model sees them -> {space name: uint8 (N, 1 or 3, H, W)}."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise UserError(
            f"spaces_of needs uint8 (N, C, H, W) images, got {images.dtype} {tuple(images.shape)}"
        )
    if channels == 3:
        return {"rgb": images}
    if edges == "none":
        return {"gray": images, "edges": apply_edges(images, "sobel", blur_sigma=edge_blur)}
    if edges == "sobel":
        return {"edges": images}
    if edges == "sobel+gray":
        return {"gray": images[:, :1], "edges": images[:, 1:2]}
    raise UserError(f"data.edges={edges!r} is not one of none, sobel, sobel+gray")
