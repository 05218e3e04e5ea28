"""Improved precision and recall (catdiff.metrics.precision_recall): known answers on point
sets whose k-NN manifolds can be worked out by hand, the component's equal-size rule and its
one-line errors."""

from __future__ import annotations

import pytest
import torch

from catdiff.errors import UserError
from catdiff.metrics.fid import RealFeatures
from catdiff.metrics.precision_recall import (
    PrecisionRecall,
    in_manifold,
    knn_radii,
    precision_recall,
)


def _cloud(n: int, center: float, seed: int, d: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return center + torch.randn(n, d, generator=g, dtype=torch.float64)


def _line(values) -> torch.Tensor:
    """Points on a line in 2-D: (x, 0)."""
    x = torch.tensor(values, dtype=torch.float64)
    return torch.stack([x, torch.zeros_like(x)], dim=1)


def test_identical_sets_have_precision_and_recall_one() -> None:
    real = _cloud(50, 0.0, seed=0)
    assert precision_recall(real, real.clone(), k=3) == (1.0, 1.0)


def test_far_apart_sets_have_precision_and_recall_zero() -> None:
    real, fake = _cloud(50, 0.0, seed=0), _cloud(50, 1000.0, seed=1)
    assert precision_recall(real, fake, k=3) == (0.0, 0.0)


def test_half_overlapping_sets_score_one_half() -> None:
    # real: clusters A and B; fake: A's very points and a cluster C far from both. Half the
    # fakes lie on real points (precision 1/2); A's real points are covered by the fakes on
    # them, B's are far from every fake ball (recall 1/2).
    a, b, c = _cloud(20, 0.0, 0), _cloud(20, 100.0, 1), _cloud(20, -100.0, 2)
    precision, recall = precision_recall(torch.cat([a, b]), torch.cat([a.clone(), c]), k=3)
    assert (precision, recall) == (0.5, 0.5)


def test_mode_collapse_keeps_precision_and_loses_recall() -> None:
    real = _cloud(40, 0.0, seed=0)
    fake = real[7:8].repeat(40, 1)  # one real image, drawn 40 times
    precision, recall = precision_recall(real, fake, k=3)
    # every fake is a real point; the fakes' balls have radius 0, covering that one point
    assert precision == 1.0 and recall == 1 / 40


def test_recall_by_hand_on_a_line_with_a_point_on_a_boundary() -> None:
    real, fake = _line(range(20)), _line(range(10))
    # 3rd-nearest-neighbour radii of the fakes 0..9: 3 at both ends, 2 inside
    assert knn_radii(fake, 3).tolist() == [3, 2, 2, 2, 2, 2, 2, 2, 2, 3]
    # real 0..9 sit on fakes; 10 and 11 are inside fake 9's ball (radius 3); 12 is on its
    # boundary, which counts; 13 is out: recall 13/20
    assert in_manifold(real, fake, knn_radii(fake, 3)).tolist() == [True] * 13 + [False] * 7
    assert precision_recall(real, fake, k=3) == (1.0, 13 / 20)
    # with k=1 the balls only reach the next point: 10 is still inside (|10-9| = 1), 11 not
    assert precision_recall(real, fake, k=1) == (1.0, 11 / 20)


def test_batching_does_not_change_the_answer() -> None:
    real, fake = _cloud(70, 0.0, seed=0), _cloud(60, 0.7, seed=1)
    assert precision_recall(real, fake, 3, batch_size=7) == precision_recall(real, fake, 3)
    assert 0.0 < precision_recall(real, fake, 3)[0] < 1.0  # a real overlap, not a corner case


class _Given:
    """What the component reads of a Space, with the features given (no extractor)."""

    def __init__(self, real: torch.Tensor, fake: torch.Tensor) -> None:
        self.real, self.fake = RealFeatures(real, "given"), fake

    def real_features(self) -> RealFeatures:
        return self.real

    def fake_features(self) -> torch.Tensor:
        return self.fake


def test_component_compares_equal_set_sizes_and_records_them() -> None:
    real, fake = _cloud(300, 0.0, seed=0), _cloud(100, 0.0, seed=1)
    scores = PrecisionRecall(k=3, seed=0)(_Given(real, fake))
    assert [s.name for s in scores] == ["precision", "recall"]
    assert all(s.settings == {"k": 3, "n": 100} and s.lower_is_better is False for s in scores)
    # the real set is cut to 100 seeded images: the same ones every time
    again = PrecisionRecall(k=3, seed=0)(_Given(real, fake))
    assert [s.value for s in again] == [s.value for s in scores]
    subset = real[torch.randperm(300, generator=torch.Generator().manual_seed(0))[:100]]
    assert [s.value for s in scores] == list(precision_recall(subset, fake, 3))


def test_component_writes_the_generic_form_per_space() -> None:
    metric = PrecisionRecall(k=2)
    result: dict = {}
    for space, shift in (("gray", 0.0), ("edges", 1000.0)):
        real, fake = _cloud(30, 0.0, 0), _cloud(30, shift, 1)
        metric.record(result, space, metric(_Given(real, fake)))
    precision = result["scores"]["precision"]
    assert precision["value"]["edges"] == 0.0 and 0 < precision["value"]["gray"] <= 1
    assert precision["lower_is_better"] is False and precision["by_extractor"] is True
    assert precision["settings"] == {"k": 2, "n": 30} and precision["format"] == ".3f"
    assert "Kynkäänniemi" in precision["about"] and "spread" not in precision


def test_bad_k_is_a_one_line_error_naming_the_key() -> None:
    with pytest.raises(UserError, match=r"metrics\.precision_recall\.k=0"):
        PrecisionRecall(k=0)
    with pytest.raises(UserError, match=r"metrics\.precision_recall\.k=3 needs more than 3"):
        PrecisionRecall(k=3)(_Given(_cloud(3, 0.0, 0), _cloud(5, 0.0, 1)))
