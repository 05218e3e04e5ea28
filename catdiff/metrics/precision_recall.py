"""Improved precision and recall (Kynkäänniemi et al. 2019), on the space's extractor features.

Fidelity and diversity apart: each set's manifold in feature space is the union of balls
around its points, each reaching the point's k-th nearest neighbour in its own set:

    manifold(Phi) = union over phi in Phi of B(phi, ||phi - NN_k(phi, Phi)||)
    precision = fraction of generated features inside manifold(real features)
    recall    = fraction of real features inside manifold(generated features)

(a boundary point counts as inside); k = 3 as in the paper. The balls shrink as a set grows,
so both sets are cut to n = min(n_real, n_fake) (a seeded random subset of the real images),
and n is recorded.
"""

from __future__ import annotations

import torch
from torch import Tensor

from catdiff.errors import UserError
from catdiff.metrics.metric import Metric, Score, Space


def _distances(a: Tensor, b: Tensor) -> Tensor:
    # Not the |a|^2 + |b|^2 - 2ab shortcut: a point on a ball's boundary must stay there.
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def knn_radii(features: Tensor, k: int, batch_size: int = 1024) -> Tensor:
    """Distance of each row of ``features`` (N, d) to its k-th nearest other row: (N,)."""
    if not 1 <= k < len(features):
        raise ValueError(f"k={k} needs more than k points, got {len(features)}")
    radii = []
    for chunk in features.split(batch_size):
        # the (k+1)-th smallest distance: the smallest is the point itself, at 0
        radii.append(_distances(chunk, features).kthvalue(k + 1, dim=1).values)
    return torch.cat(radii)


def in_manifold(queries: Tensor, support: Tensor, radii: Tensor, batch_size: int = 1024) -> Tensor:
    """Whether each query (M, d) lies in some ball B(support_i, radii_i): bool (M,)."""
    inside = []
    for chunk in queries.split(batch_size):
        inside.append((_distances(chunk, support) <= radii[None, :]).any(dim=1))
    return torch.cat(inside) if inside else torch.zeros(0, dtype=torch.bool)


def precision_recall(
    real: Tensor, fake: Tensor, k: int = 3, batch_size: int = 1024
) -> tuple[float, float]:
    """(precision, recall) of fake features (M, d) against real features (N, d)."""
    precision = in_manifold(fake, real, knn_radii(real, k, batch_size), batch_size)
    recall = in_manifold(real, fake, knn_radii(fake, k, batch_size), batch_size)
    return precision.double().mean().item(), recall.double().mean().item()


class PrecisionRecall(Metric):
    """conf/evaluate.yaml ``metrics.precision_recall``: improved precision and recall with
    k nearest neighbours; ``seed`` picks the real subset when the real set is larger."""

    def __init__(self, k: int = 3, seed: int = 0) -> None:
        if k < 1:
            raise UserError(f"metrics.precision_recall.k={k} must be at least 1")
        self.k, self.seed = k, seed

    def __call__(self, space: Space) -> list[Score]:
        real, fake = space.real_features().features, space.fake_features()
        n = min(len(real), len(fake))
        if n <= self.k:
            raise UserError(
                f"metrics.precision_recall.k={self.k} needs more than {self.k} images in "
                f"each set, got {n}: raise n or lower k"
            )
        if len(real) > n:
            generator = torch.Generator().manual_seed(self.seed)
            real = real[torch.randperm(len(real), generator=generator)[:n].to(real.device)]
        precision, recall = precision_recall(real, fake[:n], self.k)
        settings = {"k": self.k, "n": n}
        about = (
            f"precision/recall: improved precision and recall (Kynkäänniemi et al. 2019) on "
            f"the extractor's features, {self.k}-NN balls, equal real and generated set sizes "
            "(n); precision: generated images inside the real manifold, recall: real images "
            "inside the generated one; higher is better."
        )
        common = {"about": about, "lower_is_better": False, "format": ".3f"}
        return [
            Score("precision", precision, settings=settings, **common),
            Score("recall", recall, settings=settings, **common),
        ]
