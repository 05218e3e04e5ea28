"""FID and KID through torchmetrics, on features from any :class:`FeatureExtractor`.

Images are uint8 or float in [-1, 1], (N, C, H, W); floats are rounded to 8 bits once, so
generated images score as if saved to PNG. ``real_features(extractor, images)`` once, then
``fid_kid(extractor, real, fake)`` for each fake set, extracts the real set only once.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from catdiff.metrics.extractor import FeatureExtractor, as_uint8, to_unit


class _Given(nn.Module):
    """Pass-through 'feature network': the metrics receive features extracted beforehand."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.num_features = dim

    def forward(self, features: Tensor) -> Tensor:
        return features


def extract_features(extractor: FeatureExtractor, images: Tensor, batch_size: int = 256) -> Tensor:
    """Features (N, d) float64 of images (uint8 or float in [-1, 1]), on the extractor's device."""
    u8 = as_uint8(images)
    extractor.check_images(tuple(u8.shape))
    device = extractor.device
    out = []
    with torch.inference_mode():
        for start in range(0, len(u8), batch_size):
            batch = to_unit(u8[start : start + batch_size].to(device))
            out.append(extractor(batch).double())
    if not out:
        return torch.zeros(0, extractor.dim, dtype=torch.float64, device=device)
    return torch.cat(out)


class RealFeatures:
    """The real set's features (N, d) float64 and torchmetrics' FID state for them."""

    def __init__(self, features: Tensor, extractor_sha256: str) -> None:
        if features.ndim != 2 or len(features) < 2:
            raise ValueError(f"need features (N >= 2, d), got {tuple(features.shape)}")
        self.features = features.double()
        self.extractor_sha256 = extractor_sha256
        self._fid: FrechetInceptionDistance | None = None

    def __len__(self) -> int:
        return len(self.features)

    def fid_metric(self) -> FrechetInceptionDistance:
        """A FrechetInceptionDistance holding the real statistics; its fake state is empty."""
        if self._fid is None:
            # reset_real_features=False: reset() below clears only the fake statistics
            fid = FrechetInceptionDistance(
                feature=_Given(self.features.shape[1]),
                reset_real_features=False,
                sync_on_compute=False,  # a local computation, also inside a DDP job
            )
            fid.to(self.features.device)
            fid.update(self.features, real=True)
            self._fid = fid
        self._fid.reset()
        return self._fid


def real_features(
    extractor: FeatureExtractor, images: Tensor, batch_size: int = 256
) -> RealFeatures:
    return RealFeatures(extract_features(extractor, images, batch_size), extractor.sha256)


def fid_kid(
    extractor: FeatureExtractor,
    real: Tensor | RealFeatures,
    fake: Tensor,
    batch_size: int = 256,
    kid_subsets: int = 100,
    kid_subset_size: int | None = None,
    seed: int = 0,
) -> dict:
    """FID and KID between ``real`` (images or :func:`real_features`) and ``fake`` images:
    :func:`fid_kid_of_features`' dict with the extractor's name and sha256."""
    if not isinstance(real, RealFeatures):
        real = real_features(extractor, real, batch_size)
    elif real.extractor_sha256 != extractor.sha256:
        raise ValueError(
            f"real features are from extractor {real.extractor_sha256[:12]}, "
            f"not {extractor.sha256[:12]}"
        )
    fake_f = extract_features(extractor, fake, batch_size).to(real.features.device)
    scores = fid_kid_of_features(real, fake_f, kid_subsets, kid_subset_size, seed)
    return {**scores, "extractor": extractor.name, "extractor_sha256": extractor.sha256}


def fid_kid_of_features(
    real: RealFeatures,
    fake_features: Tensor,
    kid_subsets: int = 100,
    kid_subset_size: int | None = None,
    seed: int = 0,
) -> dict:
    """FID and KID on fake features extracted beforehand (shared with other metrics).
    ``kid_subset_size`` defaults to ``min(1000, n_real, n_fake)``; ``seed`` seeds KID's subset
    sampling, leaving the global RNG untouched."""
    fake_f = fake_features.double().to(real.features.device)
    n_real, n_fake = len(real), len(fake_f)
    if n_fake < 2:
        raise ValueError(f"FID/KID need at least 2 fake images, got {n_fake}")
    subset = min(1000, n_real, n_fake) if kid_subset_size is None else int(kid_subset_size)
    if not 2 <= subset <= min(n_real, n_fake):
        raise ValueError(f"kid_subset_size={subset} must be in [2, {min(n_real, n_fake)}]")

    fid = real.fid_metric()
    fid.update(fake_f, real=False)
    fid_value = float(fid.compute())

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features")
        kid = KernelInceptionDistance(
            feature=_Given(fake_f.shape[1]),
            subsets=kid_subsets,
            subset_size=subset,
            sync_on_compute=False,
        )
    kid.update(real.features, real=True)
    kid.update(fake_f, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        kid_mean, kid_std = kid.compute()
    return {
        "fid": fid_value,
        "kid_mean": float(kid_mean),
        "kid_std": float(kid_std),
        "n_real": n_real,
        "n_fake": n_fake,
        "kid_subset_size": subset,
        "kid_subsets": kid_subsets,
    }
