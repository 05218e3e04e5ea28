"""The standard FID/KID extractor: torch-fidelity's InceptionV3, 2048-d pool3 features.

Comparable with published numbers; gray images are repeated to 3 channels. Weights from
``metrics.inception_weights=PATH`` (``python -m catdiff.metrics.prefetch``), else downloaded
once by torch-fidelity.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor
from torch_fidelity.feature_extractor_inceptionv3 import (
    URL_INCEPTION_V3,
    FeatureExtractorInceptionV3,
)

from catdiff.errors import UserError
from catdiff.metrics.extractor import FeatureExtractor, as_uint8

INCEPTION_NAME = "inception-v3-pool3"
INCEPTION_URL = URL_INCEPTION_V3
WEIGHTS_KEY = "metrics.inception_weights"


class InceptionExtractor(FeatureExtractor):
    """forward: float (N, 1 or 3, H, W) in [-1, 1] -> (N, 2048) float32 pool3 features."""

    def __init__(self, model: FeatureExtractorInceptionV3, weights: str) -> None:
        super().__init__()
        self.name, self.dim, self.weights = INCEPTION_NAME, 2048, weights
        self.model = model
        self._freeze(model)

    def check_images(self, shape: tuple[int, ...]) -> None:
        if shape[1] not in (1, 3):
            raise ValueError(f"InceptionV3 takes 1 or 3 channels, got images {tuple(shape)}")

    def forward(self, x: Tensor) -> Tensor:
        self.check_images(x.shape)
        u8 = as_uint8(x)
        if u8.shape[1] == 1:
            u8 = u8.expand(-1, 3, -1, -1)
        return self.model(u8)[0]

    def info(self) -> dict:
        return {**super().info(), "weights": self.weights}


def _check_weights_file(path: Path, shown: str) -> None:
    if not path.exists():
        raise UserError(f"{WEIGHTS_KEY}={shown} does not exist")
    if not path.is_file():
        raise UserError(f"{WEIGHTS_KEY}={shown} is not a file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any parse failure (the unpickler raises KeyError, EOFError, ...)
        raise UserError(
            f"{WEIGHTS_KEY}={shown} is not a PyTorch weights file ({type(e).__name__})"
        ) from None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise UserError(f"{WEIGHTS_KEY}={shown} does not hold a state dict of tensors")


def inception_extractor(weights_path: str | Path | None = None) -> InceptionExtractor:
    """torch-fidelity's InceptionV3 (pool3, 2048-d), from ``weights_path`` or downloaded once."""
    if weights_path is None or str(weights_path) == "":
        try:
            model = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
        except (OSError, RuntimeError, ValueError) as e:  # URLError is an OSError
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(
                f"could not download the InceptionV3 weights ({reason}): run "
                f"`python -m catdiff.metrics.prefetch` on a machine with network and set "
                f"{WEIGHTS_KEY}=PATH"
            ) from None
        return InceptionExtractor(model, INCEPTION_URL)
    shown = str(weights_path)
    path = Path(weights_path).expanduser()
    _check_weights_file(path, shown)
    try:  # torch-fidelity loads the file itself (the weights were checked to be plain tensors)
        model = FeatureExtractorInceptionV3(
            "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path)
        )
    except RuntimeError as e:
        detail = " ".join(str(e).split())
        detail = detail if len(detail) <= 160 else detail[:157] + "..."
        raise UserError(
            f"{WEIGHTS_KEY}={shown} does not hold torch-fidelity's InceptionV3 weights ({detail})"
        ) from None
    return InceptionExtractor(model, str(path.resolve()))
