"""Scoring (catdiff.metrics.score): the metric components in every comparable space, the
metrics.json layout older results have (same numbers as calling fid_kid and detail_ratio
directly), extractors built only when a metric needs one, and the components of
conf/evaluate.yaml."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from catdiff.data.edges import apply_edges
from catdiff.data.synthetic import synthetic_cats
from catdiff.errors import UserError
from catdiff.metrics import score as score_module
from catdiff.metrics.components import FIDKID, DetailRatio
from catdiff.metrics.detail import detail_ratio
from catdiff.metrics.extractor import FeatureExtractor
from catdiff.metrics.fid import fid_kid
from catdiff.metrics.metric import Metric, Score
from catdiff.metrics.precision_recall import PrecisionRecall
from catdiff.metrics.score import ExtractorOptions, score, summary
from catdiff.metrics.spaces import spaces_of


class Projection(FeatureExtractor):
    """Pixels through a fixed random linear map: a deterministic extractor, no training."""

    def __init__(self, seed: int = 0, dim: int = 16, size: int = 28, name: str = "projection"):
        super().__init__()
        self.name, self.dim = name, dim
        g = torch.Generator().manual_seed(seed)
        self.net = nn.Linear(size * size, dim)
        with torch.no_grad():
            self.net.weight.copy_(torch.randn(dim, size * size, generator=g) / size)
            self.net.bias.zero_()
        self._freeze(self.net)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


@pytest.fixture
def projections(monkeypatch) -> list[Projection]:
    """extractor_for gives a new Projection per space (seeds 0, 1, ...); the list of them."""
    made: list[Projection] = []

    def extractor_for(images, options, cache_dir):
        made.append(Projection(seed=len(made)))
        return made[-1]

    monkeypatch.setattr(score_module, "extractor_for", extractor_for)
    return made


DATA = {"train": synthetic_cats(120, 28, seed=0), "test": synthetic_cats(160, 28, seed=0)[120:]}
SAMPLES = synthetic_cats(50, 28, seed=3)


@pytest.mark.parametrize("reference", ["train", "test"])
def test_fid_kid_and_detail_keep_their_keys_and_numbers(projections, reference) -> None:
    out = score(SAMPLES, DATA, {"edges": "none"}, [FIDKID(10, 1000), DetailRatio()], reference)
    assert list(out) == ["fid", "kid", "detail", "extractor"]
    fake, real = spaces_of(SAMPLES, "none"), spaces_of(DATA[reference], "none")
    for extractor, space in zip(projections, ("gray", "edges"), strict=True):
        subset = min(len(real[space]), 50)  # the conf's 1000, capped at the smaller set
        direct = fid_kid(
            extractor, real[space], fake[space], kid_subsets=10, kid_subset_size=subset
        )
        assert out["fid"][space] == direct["fid"]  # the same computation, bit for bit
        assert out["kid"][space] == {"mean": direct["kid_mean"], "std": direct["kid_std"]}
        assert out["detail"][space] == detail_ratio(fake[space], real[space])
        assert out["extractor"][space] == extractor.info()


def test_a_pixel_metric_builds_no_extractor(monkeypatch) -> None:
    def no_extractor(*args):
        raise AssertionError("no metric asked for an extractor")

    monkeypatch.setattr(score_module, "extractor_for", no_extractor)
    data = {k: apply_edges(v, "sobel+gray") for k, v in DATA.items()}
    samples = apply_edges(SAMPLES, "sobel+gray")
    out = score(samples, data, {"edges": "sobel+gray", "channels": 2}, [DetailRatio()])
    assert list(out) == ["detail"] and set(out["detail"]) == {"gray", "edges"}


def test_generic_scores_are_written_and_summarised(projections) -> None:
    out = score(SAMPLES, DATA, {"edges": "sobel"}, [PrecisionRecall(k=3)])
    assert set(out) == {"scores", "extractor"} and set(out["extractor"]) == {"edges"}
    recall = out["scores"]["recall"]
    assert set(recall["value"]) == {"edges"} and recall["settings"] == {"k": 3, "n": 50}
    assert f"recall[edges] {recall['value']['edges']:.3f}" in summary(out)


class _Twice(Metric):
    def __call__(self, space):
        return [Score("sharpness", 1.0)]


def test_two_metrics_giving_one_score_is_an_error(projections) -> None:
    with pytest.raises(ValueError, match="two metrics give the score 'sharpness'"):
        score(SAMPLES, DATA, {"edges": "sobel"}, [_Twice(), _Twice()])


def test_reference_must_be_a_split() -> None:
    with pytest.raises(UserError, match="reference=val"):
        score(SAMPLES, DATA, {}, [DetailRatio()], reference="val")


def test_extractor_options_from_a_mapping_ignore_other_keys() -> None:
    options = ExtractorOptions.of({"extractor": "inception", "kid_subsets": 5, "fid": True})
    assert options == ExtractorOptions(extractor="inception")
    with pytest.raises(UserError, match="metrics.extractor=resnet"):
        score_module.extractor_for(DATA["train"], {"extractor": "resnet"}, None)


def test_conf_lists_the_metrics_as_components() -> None:
    from catdiff.config import conf_dir
    from catdiff.evaluate import build_metrics

    metrics_cfg = OmegaConf.load(conf_dir() / "evaluate.yaml").metrics
    built = build_metrics(metrics_cfg)
    assert [type(m) for m in built] == [FIDKID, DetailRatio, PrecisionRecall]
    assert (built[0].kid_subsets, built[0].kid_subset_size, built[2].k) == (100, 1000, 3)
    for target, message in (
        ("catdiff.metrics.nope.Metric", "metrics.precision_recall._target_=catdiff.metrics.nope"),
        ("catdiff.metrics.score.ExtractorOptions", "is not a catdiff.metrics.metric.Metric"),
    ):
        broken = metrics_cfg.copy()
        broken.precision_recall = {"_target_": target}
        with pytest.raises(UserError, match=message):
            build_metrics(broken)
