"""What a sample-quality metric is: ``metric(space) -> list[Score]`` (a :class:`Metric`), called
for every comparable :class:`Space` of a run, whose features are extracted once and shared.
conf/evaluate.yaml lists the metrics by ``_target_``. :meth:`Score.write` puts each score in
metrics.json under ``scores`` in a form ``catdiff.report`` shows without knowing the metric::

    "scores": {
      "precision": {
        "label": "precision",               # the report's column name (with the space)
        "about": "improved precision ...",  # one sentence for the report's legend
        "lower_is_better": false,            # true, false, or null (neither, e.g. a ratio)
        "format": ".3f",                     # how one value is printed
        "by_extractor": true,                # on the extractor's features: the report keeps
                                             # values of different extractors apart
        "settings": {"k": 3, "n": 1000},     # values with other settings are not comparable
        "value": {"gray": 0.71, "edges": 0.64},
        "spread": {"gray": 0.01, ...},       # optional: the within-run uncertainty,
        "spread_name": "std"                 # and what it is (std, SE)
      }
    }

FID, KID and the detail ratio keep their older keys (:mod:`catdiff.metrics.components`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from catdiff.metrics.extractor import FeatureExtractor
from catdiff.metrics.fid import RealFeatures, extract_features, real_features

FEATURE_BATCH = 256  # images per extractor forward pass


class Space:
    """One comparable space of a run (``gray``, ``edges``, ``rgb``): uint8 ``fake``, ``real`` and
    ``train`` images, and the space's feature extractor, built on first use only."""

    def __init__(
        self,
        name: str,
        fake: Tensor,
        real: Tensor,
        train: Tensor,
        extractor: Callable[[], FeatureExtractor],
    ) -> None:
        self.name, self.fake, self.real, self.train = name, fake, real, train
        self._make_extractor = extractor
        self._extractor: FeatureExtractor | None = None
        self._real_features: RealFeatures | None = None
        self._fake_features: Tensor | None = None

    @property
    def extractor(self) -> FeatureExtractor:
        if self._extractor is None:
            self._extractor = self._make_extractor()
        return self._extractor

    @property
    def has_extractor(self) -> bool:
        """Whether a metric used the extractor (then its identity goes into metrics.json)."""
        return self._extractor is not None

    def real_features(self) -> RealFeatures:
        if self._real_features is None:
            self._real_features = real_features(self.extractor, self.real, FEATURE_BATCH)
        return self._real_features

    def fake_features(self) -> Tensor:
        if self._fake_features is None:
            real = self.real_features()
            fake = extract_features(self.extractor, self.fake, FEATURE_BATCH)
            self._fake_features = fake.to(real.features.device)
        return self._fake_features


@dataclass
class Score:
    """One number of a metric in one space; the fields are those of the module docstring."""

    name: str
    value: float
    label: str = ""  # default: name
    about: str = ""
    lower_is_better: bool | None = None
    format: str = ".4g"
    by_extractor: bool = True
    settings: dict[str, Any] = field(default_factory=dict)
    spread: float | None = None
    spread_name: str = "std"

    def write(self, result: dict[str, Any], space: str) -> None:
        """Add this score of ``space`` to ``result["scores"]`` (metrics.json's dict)."""
        entry = result.setdefault("scores", {}).setdefault(self.name, {})
        if space in entry.get("value", {}):
            raise ValueError(f"two metrics give the score {self.name!r} in space {space!r}")
        entry.update(
            label=self.label or self.name,
            about=self.about,
            lower_is_better=self.lower_is_better,
            format=self.format,
            by_extractor=self.by_extractor,
            settings=dict(self.settings),
        )
        entry.setdefault("value", {})[space] = float(self.value)
        if self.spread is not None:
            entry.setdefault("spread", {})[space] = float(self.spread)
            entry["spread_name"] = self.spread_name


class Metric:
    """Base of the metric components; :meth:`record` writes the generic ``scores`` form."""

    def __call__(self, space: Space) -> list[Score]:
        raise NotImplementedError

    def record(self, result: dict[str, Any], space: str, scores: list[Score]) -> None:
        for s in scores:
            s.write(result, space)
