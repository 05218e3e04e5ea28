"""Sample-quality metrics: FID and KID on a choice of feature extractor. Pure torch.

Extractors (:class:`FeatureExtractor`: float images in [-1, 1] -> (N, d) features, identified
by the SHA-256 of their weights):

* ``inception``: torch-fidelity's InceptionV3 pool3 (2048-d), comparable with published
  numbers (:func:`inception_extractor`; offline: ``python -m catdiff.metrics.prefetch``).
* ``catdiff``: a small CNN trained with SimCLR on the training split, offline, cached
  (:func:`catdiff_extractor`, :func:`load_extractor`).

NLL: :func:`nll_bpd` (the variational bound in bits/dim, full or sampled over t).

Scores: :func:`fid_kid` (torchmetrics FID and KID), with :func:`real_features` to extract the
real set once and reuse it.

Scoring a run: :func:`catdiff.metrics.score.score` computes a list of metric components (:class:`Metric`, given each
comparable :class:`Space` in turn, returning :class:`Score` values that describe themselves)
in every comparable space, with the feature extractor of :func:`extractor_for`.
"""

from catdiff.metrics.extractor import FeatureExtractor, as_uint8, weights_sha256
from catdiff.metrics.fid import RealFeatures, extract_features, fid_kid, real_features
from catdiff.metrics.inception import INCEPTION_URL, InceptionExtractor, inception_extractor
from catdiff.metrics.metric import Metric, Score, Space
from catdiff.metrics.nll import NLLResult, nats_to_bpd, nll_bpd, prior_nats, vb_terms
from catdiff.metrics.score import ExtractorOptions, extractor_for
from catdiff.metrics.simclr import CatdiffExtractor, catdiff_extractor, load_extractor

__all__ = [
    "INCEPTION_URL",
    "CatdiffExtractor",
    "ExtractorOptions",
    "FeatureExtractor",
    "InceptionExtractor",
    "Metric",
    "NLLResult",
    "RealFeatures",
    "Score",
    "Space",
    "as_uint8",
    "catdiff_extractor",
    "extract_features",
    "extractor_for",
    "fid_kid",
    "inception_extractor",
    "load_extractor",
    "nats_to_bpd",
    "nll_bpd",
    "prior_nats",
    "real_features",
    "vb_terms",
    "weights_sha256",
]
