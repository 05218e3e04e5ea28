"""The common interface of FID/KID feature extractors, and image conversion.

An extractor is frozen, in eval mode; its identity, :func:`weights_sha256`, is recorded with
every score so FIDs of different extractors are never compared. Images are first brought to
8 bits (:func:`as_uint8`), as if saved to PNG, like the real ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import torch
from torch import Tensor, nn


def weights_sha256(state_dict: Mapping[str, Tensor]) -> str:
    """SHA-256 over every (name, dtype, shape, bytes) of ``state_dict``, in name order."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().to("cpu").contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def as_uint8(images: Tensor) -> Tensor:
    """uint8 (N, C, H, W) as is; float in [-1, 1] -> uint8 (rounded, clamped); beyond +-1.5
    (e.g. [0, 255] floats) or NaN is a ValueError."""
    if not torch.is_tensor(images) or images.ndim != 4:
        shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise ValueError(f"expected images (N, C, H, W), got {shape}")
    if images.dtype == torch.uint8:
        return images
    if not images.is_floating_point():
        raise ValueError(f"expected uint8 or float images, got {images.dtype}")
    if images.numel() and not (images.abs().amax() <= 1.5):  # also catches NaN
        raise ValueError("float images must be in [-1, 1] (got values beyond +-1.5 or NaN)")
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def to_unit(images_uint8: Tensor) -> Tensor:
    """uint8 0..255 -> float32 in [-1, 1] (exact inverse of :func:`as_uint8` after rounding)."""
    return images_uint8.float() / 127.5 - 1.0


class FeatureExtractor(nn.Module):
    """float (N, C, H, W) in [-1, 1] -> (N, dim) float32. Subclasses set ``name`` and ``dim``
    and call :meth:`_freeze` once their weights are final."""

    name: str
    dim: int
    sha256: str

    def _freeze(self, network: nn.Module) -> None:
        self.requires_grad_(False)
        self.eval()
        self.sha256 = weights_sha256(network.state_dict())

    def train(self, mode: bool = True) -> FeatureExtractor:
        """Stay in eval mode: the features must not depend on the batch."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        p = next(self.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def check_images(self, shape: tuple[int, ...]) -> None:
        """Raise if images of ``shape`` (N, C, H, W) cannot go through this extractor."""

    def info(self) -> dict:
        """What to record next to a score: ``{"name", "sha256", "dim", ...}``."""
        return {"name": self.name, "sha256": self.sha256, "dim": self.dim}
