"""Score generated images: every metric in every comparable space, as metrics.json holds it.

Each comparable space (:mod:`catdiff.metrics.spaces`) gets its own feature extractor and is
handed to each metric. ``catdiff.evaluate`` and the evaluation during training both score
here, so their numbers agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from catdiff.errors import UserError
from catdiff.metrics.extractor import FeatureExtractor
from catdiff.metrics.inception import inception_extractor
from catdiff.metrics.metric import Metric, Space
from catdiff.metrics.simclr import catdiff_extractor, load_extractor
from catdiff.metrics.spaces import spaces_of


@dataclass(frozen=True)
class ExtractorOptions:
    """Which feature extractor each space gets (``metrics.*``): ``catdiff`` (SimCLR on the
    space's training images) or ``inception``; ``extractor_steps`` 0 keeps the default."""

    extractor: str = "catdiff"
    extractor_path: str | None = None
    extractor_steps: int = 0
    inception_weights: str | None = None

    @classmethod
    def of(cls, options: ExtractorOptions | Mapping[str, Any]) -> ExtractorOptions:
        if isinstance(options, ExtractorOptions):
            return options
        return cls(**{f.name: options[f.name] for f in fields(cls) if f.name in options})


def extractor_for(
    train_space_images: torch.Tensor,
    options: ExtractorOptions | Mapping[str, Any],
    cache_dir: Path | None,
) -> FeatureExtractor:
    """The feature extractor of one space, from the training images of that space."""
    opts = ExtractorOptions.of(options)
    if opts.extractor == "inception":
        return inception_extractor(opts.inception_weights)
    if opts.extractor != "catdiff":
        raise UserError(f"metrics.extractor={opts.extractor} must be catdiff or inception")
    if opts.extractor_path:
        return load_extractor(opts.extractor_path)
    steps = {"steps": opts.extractor_steps} if opts.extractor_steps > 0 else {}
    return catdiff_extractor(train_space_images, cache_dir, progress=True, **steps)


def score(
    samples: torch.Tensor,
    data: Mapping[str, torch.Tensor],
    data_space: Mapping[str, Any],
    metrics: Sequence[Metric],
    reference: str = "train",
    cache_dir: Path | None = None,
    device: torch.device | str = "cpu",
    extractor: ExtractorOptions | Mapping[str, Any] = ExtractorOptions(),
) -> dict[str, Any]:
    """Every metric of uint8 samples against ``data[reference]``, in each comparable space of
    ``data_space`` (the run's ``data.*``): what metrics.json gets, with ``extractor: {space:
    info}`` for every extractor a metric used."""
    if reference not in data:
        raise UserError(f"reference={reference} must be train or test")
    options = ExtractorOptions.of(extractor)
    defaults = {"edges": "none", "channels": 1, "edge_blur": 0.0}
    space_args = {k: data_space.get(k, v) for k, v in defaults.items()}
    fake = spaces_of(samples, **space_args)
    real = spaces_of(data[reference], **space_args)
    train = spaces_of(data["train"], **space_args) if reference != "train" else real
    out: dict[str, Any] = {}
    used: dict[str, dict] = {}
    for name in fake:

        def make_extractor(images: torch.Tensor = train[name]) -> FeatureExtractor:
            return extractor_for(images, options, cache_dir).to(device)

        space = Space(name, fake[name], real[name], train[name], make_extractor)
        for metric in metrics:
            metric.record(out, name, metric(space))
        if space.has_extractor:
            used[name] = space.extractor.info()
    if used:
        out["extractor"] = used
    return out


def summary(result: Mapping[str, Any]) -> list[str]:
    """One short text per score of a metrics.json dict: ``FID[gray] 41.20  KID[gray] ...``."""
    parts = []
    fids, kids, details = (result.get(k) or {} for k in ("fid", "kid", "detail"))
    for space in dict.fromkeys([*fids, *details]):
        if space in fids and space in kids:
            fid, kid = fids[space], kids[space]
            parts.append(
                f"FID[{space}] {fid:.2f}  KID[{space}] {kid['mean']:.4f}+-{kid['std']:.4f}"
            )
        if space in details:
            parts.append(f"detail[{space}] {details[space]:.2f}")
    for name, entry in result.get("scores", {}).items():
        for space, value in entry["value"].items():
            parts.append(f"{name}[{space}] {value:{entry.get('format') or '.4g'}}")
    return parts
