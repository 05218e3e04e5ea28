"""What a sample-quality metric is: a component that scores one comparable space at a time.

A metric is an object with ``__call__(space) -> list[Score]`` (subclass :class:`Metric`); the
scoring (:func:`catdiff.metrics.score.score`) hands it every comparable space of a run
(:mod:`catdiff.metrics.spaces`) as a :class:`Space`: the generated images, the reference
images and the training split in that space, and the space's feature extractor with the
features of both sets, extracted once and shared by every metric that asks for them.
conf/evaluate.yaml lists the metrics with their ``_target_``, so a new metric is its module
and one entry there.

Each :class:`Score` describes itself, and :meth:`Score.write` puts it in metrics.json under
``scores`` in a form ``python -m catdiff.report`` shows without knowing the metric::

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

FID, KID and the detail ratio predate this form and keep their own keys (``fid``, ``kid``,
``detail``; :mod:`catdiff.metrics.components`), which older results and readers rely on.
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
    """One comparable space of a run (``gray``, ``edges``, ``rgb``), as every metric sees it:
    uint8 generated (``fake``), reference (``real``) and training images in this space, and
    ``extractor``, which builds the space's feature extractor on first use only (a metric on
    pixels alone never trains one)."""

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
    """One number a metric gives in one space: ``name`` is its key in metrics.json's
    ``scores``, the other fields the entry's fields in the module docstring."""

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
    """Base of the metric components: ``metric(space)`` gives the scores of one space;
    :meth:`record` writes them in the generic ``scores`` form (overridden only to keep an
    older metrics.json layout)."""

    def __call__(self, space: Space) -> list[Score]:
        raise NotImplementedError

    def record(self, result: dict[str, Any], space: str, scores: list[Score]) -> None:
        for s in scores:
            s.write(result, space)
