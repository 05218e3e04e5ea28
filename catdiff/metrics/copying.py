"""Are samples copies of training faces? Nearest-neighbour distances against held-out faces.

A real face that was never trained on sits at some typical L2 distance from its nearest
training face. A model that memorises
produces samples much closer than that. So the test is relative: take the ``quantile`` (5%) of
the held-out faces' nearest-neighbour distances as a threshold; held-out faces fall below it at
rate ``quantile`` by construction, and samples that fall below it clearly more often are
copying. The training set is searched together with its mirror images, because both recipes
train with random horizontal flips.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _flat_unit(images: Tensor) -> Tensor:
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError("nearest-neighbour distances take uint8 images (N, C, H, W)")
    return images.flatten(1).double() / 255.0


def nearest_distances(
    queries: Tensor, references: Tensor, batch_size: int = 256, mirror: bool = True
) -> tuple[Tensor, Tensor]:
    """L2 distance (pixels in [0, 1]) from each query to its nearest reference, and its index.

    With ``mirror`` the references' horizontal flips count too (index into the unflipped set).
    """
    ref = _flat_unit(references)
    if mirror:
        ref = torch.cat([ref, _flat_unit(references.flip(-1))])
    ref_sq = ref.square().sum(1)
    q = _flat_unit(queries)
    dists, idx = [], []
    for chunk in q.split(batch_size):
        d2 = chunk.square().sum(1, keepdim=True) - 2 * chunk @ ref.T + ref_sq
        best, where = d2.min(dim=1)
        dists.append(best.clamp(min=0).sqrt())
        idx.append(where % len(references))
    return torch.cat(dists).float(), torch.cat(idx)


def copying(
    samples: Tensor, train: Tensor, held_out: Tensor, quantile: float = 0.05
) -> dict[str, float | int | bool]:
    """Compare the samples' nearest-training-face distances with held-out real faces'.

    Returns the medians of both, the threshold (the held-out ``quantile``), the rate of samples
    below it with its binomial standard error, and ``copies_more_than_held_out``: whether that
    rate exceeds ``quantile`` by more than two standard errors.
    """
    if not 0 < quantile < 1:
        raise ValueError(f"quantile={quantile} must be in (0, 1)")
    d_samples, _ = nearest_distances(samples, train)
    d_held, _ = nearest_distances(held_out, train)
    threshold = float(torch.quantile(d_held.double(), quantile))
    rate = float((d_samples < threshold).double().mean())
    held_rate = float((d_held < threshold).double().mean())
    se = math.sqrt(quantile * (1 - quantile) / len(d_samples))
    return {
        "median_nn_samples": float(d_samples.median()),
        "median_nn_held_out": float(d_held.median()),
        "min_nn_samples": float(d_samples.min()),
        "min_nn_held_out": float(d_held.min()),
        "quantile": quantile,
        "threshold": threshold,
        "rate_samples": rate,
        "rate_held_out": held_rate,
        "rate_se": se,
        "n_samples": len(d_samples),
        "n_held_out": len(d_held),
        "copies_more_than_held_out": rate > quantile + 2 * se,
    }
