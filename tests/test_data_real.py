"""The real Kaggle cat faces in ../shared/data (skipped where the folder is absent)."""

from __future__ import annotations

import time

import pytest
import torch

from catdiff.data import load_source, split_by_hash, split_loaded
from catdiff.lightning.datamodule import CatDataModule
from tests.conftest import SHARED_DATA

CATFACES = SHARED_DATA / "catfaces64"

pytestmark = pytest.mark.skipif(not CATFACES.is_dir(), reason="no ../shared/data/catfaces64")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("decode-cache")


@pytest.fixture(scope="module")
def cold(cache_dir):
    """The first, cold load (decodes 8,000 of the 13,544 files: a few seconds)."""
    return load_source("catfaces", root=CATFACES, cache_dir=cache_dir)


def test_report_says_13544_files_8000_distinct(cold):
    report = cold.report
    assert (report.files_seen, report.distinct, report.duplicates_dropped, report.unreadable) == (
        13544,
        8000,
        5544,
        0,
    )
    assert cold.images.shape == (8000, 1, 28, 28) and len(set(cold.keys)) == 8000
    assert str(report).startswith(f"data.root={CATFACES / 'cats'}: 13544 files, 8000 distinct")


def test_no_image_in_two_splits(cold):
    splits = split_loaded(cold, val_fraction=0.05, test_fraction=0.05)
    report = cold.report
    assert report.train + report.val + report.test == 8000
    assert 300 <= report.val <= 500 and 300 <= report.test <= 500
    pictures = {name: {bytes(x.numpy()) for x in images} for name, images in splits.items()}
    assert sum(map(len, pictures.values())) == 8000  # distinct within each split...
    assert not pictures["train"] & pictures["val"]  # ...and across them
    assert not pictures["train"] & pictures["test"] and not pictures["val"] & pictures["test"]
    # by key, too, and the same split as split_by_hash gives on the keys
    index = split_by_hash(cold.keys, 0.05, 0.05)
    assert {k: len(v) for k, v in index.items()} == {k: len(v) for k, v in splits.items()}


def test_warm_start_is_ready_within_2_s(cold, cache_dir):
    assert cold.report.cache.startswith("built ")
    start = time.perf_counter()
    dm = CatDataModule(source="catfaces", root=str(CATFACES), cache_dir=str(cache_dir))
    dm.prepare_data()
    dm.setup("fit")
    seconds = time.perf_counter() - start
    assert "decode cache loaded" in str(dm.report)
    assert len(dm.train_images) + len(dm.val_images) + len(dm.test_images) == 8000
    assert torch.equal(dm.val_images, split_loaded(cold)["val"])
    # 0.2-0.5 s on an idle 2-core machine; the bound leaves room for a busy one.
    assert seconds < 2.0, f"warm data setup took {seconds:.2f} s"
