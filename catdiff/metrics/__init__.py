"""Sample-quality metrics. Pure torch.

FID and KID (:func:`fid_kid`) on a :class:`FeatureExtractor` identified by the SHA-256 of its
weights: torch-fidelity's InceptionV3 (:func:`inception_extractor`) or a small SimCLR CNN
trained on the training split (:func:`catdiff_extractor`); the bound in bits/dim
(:func:`nll_bpd`). :func:`catdiff.metrics.score.score` hands every comparable :class:`Space`
of a run to each :class:`Metric`, which returns self-describing :class:`Score` values.
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
