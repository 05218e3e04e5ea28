"""FID/KID (catdiff.metrics): scores, the catdiff extractor and its cache, InceptionV3 loading
from a local file (random weights: no numbers from it are meaningful), the offline prefetch."""

from __future__ import annotations

import hashlib
import logging

import pytest
import torch
import torch_fidelity.feature_extractor_inceptionv3 as tfi

from catdiff.data.edges import gaussian_blur
from catdiff.data.synthetic import synthetic_cats
from catdiff.errors import UserError
from catdiff.metrics import (
    RealFeatures,
    catdiff_extractor,
    extract_features,
    fid_kid,
    inception_extractor,
    load_extractor,
    real_features,
    simclr,
    weights_sha256,
)
from catdiff.metrics import prefetch as prefetch_mod
from catdiff.metrics.extractor import as_uint8, to_unit

TINY = {"steps": 40, "batch_size": 64, "width": 8}  # ~1 s on one thread


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """300 procedural cat sketches, uint8 (300, 1, 16, 16): the extractor's training set."""
    return synthetic_cats(300, 16, seed=0)


@pytest.fixture(scope="module")
def held_out() -> torch.Tensor:
    """300 more sketches from the same distribution (the next 300 of the same seed)."""
    return synthetic_cats(600, 16, seed=0)[300:]


@pytest.fixture(scope="module")
def extractor(images, tmp_path_factory):
    return catdiff_extractor(
        images, tmp_path_factory.mktemp("cache"), seed=0, progress=False, **TINY
    )


def _noisy(x: torch.Tensor, sigma: float, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (to_unit(x) + sigma * torch.randn(x.shape, generator=g)).clamp(-1, 1)


def test_fid_self_is_zero_and_grows_with_noise(extractor, images):
    real = real_features(extractor, images)
    same = fid_kid(extractor, real, images, kid_subsets=5)
    fids = [
        fid_kid(extractor, real, _noisy(images, s), kid_subsets=5)["fid"] for s in (0.05, 0.2, 0.5)
    ]
    assert abs(same["fid"]) < 1e-3 * fids[0]
    assert fids[0] < fids[1] < fids[2], fids
    blurred = fid_kid(extractor, real, gaussian_blur(to_unit(images), 1.0), kid_subsets=5)
    assert blurred["fid"] > fids[0]
    assert same["n_real"] == same["n_fake"] == 300
    assert same["extractor_sha256"] == extractor.sha256
    assert same["extractor"] == "catdiff-simclr-v1"


def test_kid_near_zero_for_two_samples_and_positive_for_noise(extractor, images, held_out):
    # Two disjoint samples of one distribution (KID's cross term must not pair an image with
    # a copy of itself: that biases the unbiased estimate downwards).
    same = fid_kid(extractor, images, held_out, kid_subsets=50, kid_subset_size=150)
    assert abs(same["kid_mean"]) < 2 * same["kid_std"], same
    noisy = fid_kid(extractor, images, _noisy(held_out, 1.0), kid_subsets=50, kid_subset_size=150)
    assert noisy["kid_mean"] > 4 * noisy["kid_std"], noisy
    assert noisy["kid_mean"] > same["kid_mean"] + 5 * same["kid_std"]
    assert noisy["fid"] > 5 * same["fid"]
    # default subset size: min(1000, n_real, n_fake)
    assert fid_kid(extractor, images, held_out[:50], kid_subsets=2)["kid_subset_size"] == 50


def test_kid_sampling_is_seeded_and_leaves_global_rng_alone(extractor, images):
    a, b = images[:150], images[150:]
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    one = fid_kid(extractor, a, b, kid_subsets=10, kid_subset_size=50, seed=7)
    assert torch.equal(torch.rand(1), before)
    two = fid_kid(extractor, a, b, kid_subsets=10, kid_subset_size=50, seed=7)
    other = fid_kid(extractor, a, b, kid_subsets=10, kid_subset_size=50, seed=8)
    assert one["kid_mean"] == two["kid_mean"] and one["kid_std"] == two["kid_std"]
    assert other["kid_mean"] != one["kid_mean"]


def test_real_features_are_reused_without_accumulating_fakes(extractor, images):
    real, fake1, fake2 = images[:200], images[200:], _noisy(images[200:], 0.3)
    cached = real_features(extractor, real)
    first = fid_kid(extractor, cached, fake1, kid_subsets=5)
    fid_kid(extractor, cached, fake2, kid_subsets=5)
    again = fid_kid(extractor, cached, fake1, kid_subsets=5)
    fresh = fid_kid(extractor, real, fake1, kid_subsets=5)
    assert first == again
    assert fresh["fid"] == pytest.approx(first["fid"], rel=1e-9)
    assert fresh["kid_mean"] == pytest.approx(first["kid_mean"], rel=1e-9)
    stale = RealFeatures(cached.features, "0" * 64)
    with pytest.raises(ValueError, match="extractor"):
        fid_kid(extractor, stale, fake1)


def test_uint8_and_float_inputs_agree(extractor, images):
    as_float = to_unit(images)
    assert torch.equal(as_uint8(as_float), images)
    assert torch.equal(extract_features(extractor, images), extract_features(extractor, as_float))
    feats = extract_features(extractor, images[:10], batch_size=3)
    assert feats.shape == (10, extractor.dim) and feats.dtype == torch.float64
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        extract_features(extractor, images.float())  # 0..255 floats: a mistake


def test_extractor_cache_is_reused_and_keyed_by_images(extractor, images, tmp_path, monkeypatch):
    first = catdiff_extractor(images, tmp_path, seed=0, progress=False, **TINY)
    files = list(tmp_path.glob("catdiff-extractor-*.pt"))
    key = simclr.cache_key(images, {**simclr.DEFAULTS, **TINY, "seed": 0})
    assert [f.name for f in files] == [f"catdiff-extractor-{key[:16]}.pt"]
    assert first.sha256 == extractor.sha256  # deterministic: same images, seed, steps
    assert first.sha256 == weights_sha256(first.encoder.state_dict())

    def no_training(*args, **kwargs):
        raise AssertionError("the cached extractor was retrained")

    monkeypatch.setattr(simclr, "train_encoder", no_training)
    assert (
        catdiff_extractor(images, tmp_path, seed=0, progress=False, **TINY).sha256 == first.sha256
    )
    changed = images.clone()
    changed[0, 0, 0, 0] ^= 1
    for other_images, seed in ((changed, 0), (images[:-1], 0), (images, 1)):
        with pytest.raises(AssertionError, match="retrained"):
            catdiff_extractor(other_images, tmp_path, seed=seed, progress=False, **TINY)
    assert simclr.cache_key(changed, {}) != simclr.cache_key(images, {})


def test_corrupt_cache_file_is_rebuilt(images, tmp_path, caplog):
    hp = {**simclr.DEFAULTS, "steps": 2, "batch_size": 32, "width": 4, "seed": 0}
    path = simclr.cache_path(tmp_path, simclr.cache_key(images[:64], hp))
    path.write_bytes(b"not a checkpoint")
    with caplog.at_level(logging.WARNING):
        ex = catdiff_extractor(
            images[:64], tmp_path, progress=False, steps=2, batch_size=32, width=4
        )
    assert "retraining" in caplog.text
    assert load_extractor(path).sha256 == ex.sha256
    assert not list(tmp_path.glob(".*.tmp"))


def test_load_extractor_and_bad_paths(extractor, images, tmp_path):
    path = extractor.save(tmp_path / "mine.pt")
    loaded = load_extractor(path)
    loaded.train()  # stays in eval mode: features never depend on the batch
    assert not loaded.training
    assert loaded.sha256 == extractor.sha256
    assert torch.equal(extract_features(loaded, images), extract_features(extractor, images))
    assert loaded.info()["params"] == sum(p.numel() for p in extractor.parameters())

    with pytest.raises(UserError, match=r"^metrics.extractor_path=.*missing.pt does not exist$"):
        load_extractor(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_text("hello")
    with pytest.raises(UserError, match="metrics.extractor_path=.*junk.pt cannot be read"):
        load_extractor(tmp_path / "junk.pt")
    payload = extractor.payload()
    name = next(iter(payload["state_dict"]))
    payload["state_dict"][name] = payload["state_dict"][name] + 1
    torch.save(payload, tmp_path / "tampered.pt")
    with pytest.raises(UserError, match="metrics.extractor_path=.*tampered.pt is corrupt"):
        load_extractor(tmp_path / "tampered.pt")
    with pytest.raises(UserError, match="trained on images 1x16x16, not 1x28x28"):
        extract_features(loaded, synthetic_cats(2, 28))


# ---- InceptionV3 (torch-fidelity) ------------------------------------------------------


@pytest.fixture(scope="module")
def random_inception_file(tmp_path_factory):
    """torch-fidelity's InceptionV3 with random weights (built without downloading), saved."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tfi, "load_state_dict_from_url", lambda *a, **k: None)
        mp.setattr(tfi.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None)
        torch.manual_seed(0)
        model = tfi.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    path = tmp_path_factory.mktemp("inception") / "random-inception.pth"
    torch.save(model.state_dict(), path)
    return path, weights_sha256(model.state_dict())


def test_inception_loads_a_local_weights_file(random_inception_file):
    path, sha = random_inception_file
    ex = inception_extractor(str(path))
    gray = synthetic_cats(2, 28, seed=5)
    feats = extract_features(ex, gray)
    assert feats.shape == (2, 2048) and torch.isfinite(feats).all()
    assert feats.std() > 0 and not torch.equal(feats[0], feats[1])
    # gray is repeated to 3 channels; the same uint8 input gives the same features again
    assert torch.equal(feats, extract_features(ex, gray.expand(-1, 3, -1, -1)))
    info = ex.info()
    assert info["name"] == "inception-v3-pool3" and info["dim"] == 2048
    assert info["sha256"] == sha and info["weights"] == str(path.resolve())


def test_inception_bad_weights_name_the_key(tmp_path, extractor):
    with pytest.raises(UserError, match=r"^metrics.inception_weights=.*nope.pth does not exist$"):
        inception_extractor(tmp_path / "nope.pth")
    with pytest.raises(UserError, match="metrics.inception_weights=.* is not a file"):
        inception_extractor(tmp_path)
    (tmp_path / "junk.pth").write_bytes(b"\x00garbage")
    with pytest.raises(UserError, match="metrics.inception_weights=.*junk.pth is not a PyTorch"):
        inception_extractor(tmp_path / "junk.pth")
    torch.save(extractor.encoder.state_dict(), tmp_path / "other.pth")
    with pytest.raises(UserError, match="other.pth does not hold torch-fidelity's InceptionV3"):
        inception_extractor(tmp_path / "other.pth")


def test_inception_download_failure_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no cached weights
    monkeypatch.setattr(tfi, "URL_INCEPTION_V3", "http://127.0.0.1:9/weights-x-00000000.pth")
    with pytest.raises(UserError, match="prefetch.*metrics.inception_weights=PATH"):
        inception_extractor(None)


# ---- prefetch ----------------------------------------------------------------------------


def test_prefetch_unreachable_url_fails_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(prefetch_mod, "URL", "http://127.0.0.1:9/weights-inception-6726825d.pth")
    with pytest.raises(SystemExit) as exit_info:
        prefetch_mod.main([f"out={tmp_path / 'w.pth'}"])
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: could not download http://127.0.0.1:9/")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no partial file left behind

    with pytest.raises(SystemExit):
        prefetch_mod.main(["where=/tmp"])
    assert capsys.readouterr().err.startswith("error: unknown argument 'where=/tmp'; usage:")


def test_prefetch_downloads_checks_and_prints_the_option(tmp_path, monkeypatch, capsys):
    payload = b"weights" * 1000
    digest = hashlib.sha256(payload).hexdigest()
    source = tmp_path / f"weights-test-{digest[:8]}.pth"
    source.write_bytes(payload)
    monkeypatch.setattr(prefetch_mod, "URL", source.as_uri())
    out = tmp_path / "got" / "w.pth"
    prefetch_mod.main([f"out={out}"])
    assert capsys.readouterr().out == f"metrics.inception_weights={out.resolve()}\n"
    assert out.read_bytes() == payload

    bad = tmp_path / "weights-test-00000000.pth"
    bad.write_bytes(payload)
    monkeypatch.setattr(prefetch_mod, "URL", bad.as_uri())
    with pytest.raises(SystemExit):
        prefetch_mod.main([f"out={tmp_path / 'bad.pth'}"])
    assert "does not start with 00000000" in capsys.readouterr().err
    assert not (tmp_path / "bad.pth").exists()


def test_prefetch_default_url_is_torch_fidelitys():
    assert prefetch_mod.URL == tfi.URL_INCEPTION_V3
    assert prefetch_mod._expected_prefix(prefetch_mod.URL) == "6726825d"
