"""FID/KID and the detail ratio as metric components, writing their own metrics.json keys
(``fid: {space: x}``, ``kid: {space: {mean, std}}``, ``detail: {space: x}``), which older
results and their readers rely on."""

from __future__ import annotations

from typing import Any

from catdiff.errors import UserError
from catdiff.metrics.detail import detail_ratio
from catdiff.metrics.fid import fid_kid_of_features
from catdiff.metrics.metric import Metric, Score, Space


class FIDKID(Metric):
    """Fréchet Inception Distance (Heusel et al. 2017) and Kernel Inception Distance
    (Bińkowski et al. 2018) on the space's extractor features.

    FID is the Fréchet distance between Gaussians fitted to the real and generated features,
    ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)): biased at small n, so FIDs compare
    only at equal n. KID is the unbiased squared MMD with the cubic polynomial kernel
    k(x, y) = (x.y / d + 1)^3, averaged over ``kid_subsets`` random subsets of
    ``kid_subset_size`` images (capped at the smaller set), its std over those subsets.
    """

    def __init__(self, kid_subsets: int = 100, kid_subset_size: int = 1000) -> None:
        if kid_subsets < 1 or kid_subset_size < 2:
            raise UserError(
                f"metrics.fid_kid: kid_subsets={kid_subsets} must be at least 1 and "
                f"kid_subset_size={kid_subset_size} at least 2"
            )
        self.kid_subsets, self.kid_subset_size = kid_subsets, kid_subset_size

    def __call__(self, space: Space) -> list[Score]:
        real, fake = space.real_features(), space.fake_features()
        subset = min(self.kid_subset_size, len(real), len(fake))
        result = fid_kid_of_features(real, fake, self.kid_subsets, subset)
        return [
            Score("fid", result["fid"], "FID", lower_is_better=True),
            Score("kid", result["kid_mean"], "KID", lower_is_better=True, spread=result["kid_std"]),
        ]

    def record(self, result: dict[str, Any], space: str, scores: list[Score]) -> None:
        fid, kid = scores
        result.setdefault("fid", {})[space] = fid.value
        result.setdefault("kid", {})[space] = {"mean": kid.value, "std": kid.spread}


class DetailRatio(Metric):
    """The Laplacian-energy ratio of samples over reference images (:mod:`catdiff.metrics.detail`):
    1 is as finely detailed as the data, below 1 smoother, above 1 noisier."""

    def __call__(self, space: Space) -> list[Score]:
        return [Score("detail", detail_ratio(space.fake, space.real), by_extractor=False)]

    def record(self, result: dict[str, Any], space: str, scores: list[Score]) -> None:
        result.setdefault("detail", {})[space] = scores[0].value
