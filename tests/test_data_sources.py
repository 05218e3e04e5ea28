"""Sources (folder + include, cifar10_cat both ways, synthetic) and the CatDataModule on top."""

from __future__ import annotations

import logging
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import catdiff.data.cifar as cifar
from catdiff.data import list_images, load_source, resolve_cifar_root, split_loaded
from catdiff.errors import UserError
from catdiff.lightning.datamodule import CatDataModule
from tests.conftest import SHARED_DATA


def cat(path: Path, seed: int, size=(20, 20)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def rel(paths, root):
    return [p.relative_to(root).as_posix() for p in paths]


# --- folder + data.include ----------------------------------------------------------------


def test_include_subfolders_and_globs(tmp_path):
    for i, name in enumerate(["a/1.png", "a/deep/2.png", "b/3.png", "b/cat/4.png", "c/cat/5.jpg"]):
        cat(tmp_path / name, i)
    assert rel(list_images(tmp_path, "a"), tmp_path) == ["a/1.png", "a/deep/2.png"]
    assert rel(list_images(tmp_path, "*/cat/*"), tmp_path) == ["b/cat/4.png", "c/cat/5.jpg"]
    assert rel(list_images(tmp_path, ["b", "c/"]), tmp_path) == [
        "b/3.png",
        "b/cat/4.png",
        "c/cat/5.jpg",
    ]
    assert rel(list_images(tmp_path, "*.jpg"), tmp_path) == ["c/cat/5.jpg"]
    assert len(list_images(tmp_path, None)) == len(list_images(tmp_path, [])) == 5
    with pytest.raises(UserError, match=r"data.include=\['zz'\] keeps none of the 5"):
        list_images(tmp_path, "zz")
    loaded = load_source("folder", root=tmp_path, include="a", image_size=8)
    assert loaded.report.files_seen == 2


def test_folder_needs_a_root():
    with pytest.raises(UserError, match="data=folder needs data.root=PATH"):
        load_source("folder", root=None)
    with pytest.raises(UserError, match="data.source='nope'"):
        load_source("nope")


def test_crop_none_squeezes_instead_of_cutting(tmp_path):
    wide = np.zeros((10, 30), dtype=np.uint8)
    wide[:, :10] = 255  # a white left third: cut away by the centre crop, kept when squeezed
    Image.fromarray(wide).save(tmp_path / "wide.png")
    centre = load_source("folder", root=tmp_path, image_size=9, resample="box").images
    squeezed = load_source(
        "folder", root=tmp_path, image_size=9, resample="box", crop="none"
    ).images
    assert centre.float().mean() == 0 and squeezed[..., :3].float().mean() == 255
    with pytest.raises(UserError, match="data.crop"):
        load_source("folder", root=tmp_path, crop="pad")


def test_synthetic_in_rgb_and_report():
    loaded = load_source("synthetic", synthetic_n=12, image_size=16, channels=3)
    assert loaded.images.shape == (12, 3, 16, 16)
    assert torch.equal(loaded.images[:, 0], loaded.images[:, 2])
    assert str(loaded.report).startswith("data=synthetic: 12 procedural sketches, 12 distinct")


# --- cifar10_cat --------------------------------------------------------------------------


def cifar_folder(root: Path) -> Path:
    for i in range(6):
        cat(root / "train" / "cat" / f"{i:04d}.jpg", i, (32, 32))
    for i in range(3):
        cat(root / "test" / "cat" / f"{i:04d}.jpg", 100 + i, (32, 32))
    # A picture in both sets stays in test only; a file outside train/ and test/ is ignored.
    shutil.copy(root / "test" / "cat" / "0001.jpg", root / "train" / "cat" / "9999.jpg")
    cat(root / "README" / "x.png", 7)
    return root


def test_cifar_folder_layout_keeps_cifars_test_split(tmp_path):
    root = cifar_folder(tmp_path / "cifar10_cat")
    assert resolve_cifar_root(root, tmp_path / "data") == ("folder", root)
    loaded = load_source("cifar10_cat", root=root, image_size=28, cache_dir=tmp_path / "cache")
    report = loaded.report
    assert (report.files_seen, report.distinct, report.duplicates_dropped) == (10, 9, 1)
    splits = split_loaded(loaded, val_fraction=0.3, test_fraction=0.5)  # test_fraction unused
    assert len(splits["test"]) == 3 and len(splits["train"]) + len(splits["val"]) == 6
    test_only = load_source("folder", root=root / "test", image_size=28).images
    assert torch.equal(splits["test"], test_only)
    assert "train " in str(report) and "test 3" in str(report)
    # also found under data_dir without data.root
    shutil.copytree(root, tmp_path / "data" / "cifar10_cat")
    kind, found = resolve_cifar_root(None, tmp_path / "data")
    assert (kind, found) == ("folder", tmp_path / "data" / "cifar10_cat")


def fake_cifar_batches(root: Path, per_file: int = 8) -> Path:
    """torchvision's cifar-10-batches-py layout with a few random images per pickle."""
    base = root / cifar.TORCHVISION_FOLDER
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in (*cifar.BATCH_FILES, cifar.TEST_FILE):
        labels = [i % 4 for i in range(per_file)]  # label 3 = cat: 2 of every 8
        data = rng.integers(0, 256, (per_file, 3 * 32 * 32), dtype=np.uint8)
        with open(base / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels}, f)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": ["plane", "car", "bird", "cat"]}, f)
    return root


@pytest.fixture
def no_md5(monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)


def test_cifar_through_torchvision(tmp_path, no_md5):
    root = fake_cifar_batches(tmp_path / "tv")
    assert resolve_cifar_root(root, tmp_path) == ("torchvision", root)
    assert resolve_cifar_root(root / cifar.TORCHVISION_FOLDER, tmp_path) == ("torchvision", root)
    loaded = load_source(
        "cifar10_cat", root=root, image_size=32, channels=3, cache_dir=tmp_path / "c"
    )
    assert loaded.images.shape == (12, 3, 32, 32)  # 2 cats in each of 6 pickles
    assert loaded.fixed_test.tolist() == [True] * 2 + [False] * 10
    with open(root / cifar.TORCHVISION_FOLDER / cifar.TEST_FILE, "rb") as f:
        test = pickle.load(f)
    first_test_cat = test["data"][3].reshape(3, 32, 32)
    assert np.array_equal(loaded.images[0].numpy(), first_test_cat)  # 32 px RGB: untouched
    assert "data=cifar10_cat" in str(loaded.report) and "12 images" in str(loaded.report)
    warm = load_source(
        "cifar10_cat", root=root, image_size=32, channels=3, cache_dir=tmp_path / "c"
    )
    assert warm.report.cache.startswith("loaded") and torch.equal(
        warm.fixed_test, loaded.fixed_test
    )
    gray = load_source("cifar10_cat", root=root, image_size=28)
    assert gray.images.shape == (12, 1, 28, 28)


def test_cifar_unreadable_torchvision_folder_is_one_line(tmp_path):
    (tmp_path / cifar.TORCHVISION_FOLDER).mkdir()
    with pytest.raises(UserError, match=r"data.root=.*torchvision could not read") as info:
        load_source("cifar10_cat", root=tmp_path)
    assert "\n" not in str(info.value)


def test_cifar_without_network_fails_fast_naming_data_root(tmp_path, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("torchvision must not be asked to download")

    monkeypatch.setattr(cifar, "_has_network", lambda host: False)
    monkeypatch.setattr(cifar, "_download", no_download)
    with pytest.raises(UserError) as info:
        load_source("cifar10_cat", data_dir=tmp_path / "data")
    message = str(info.value)
    assert message.startswith("no network to download CIFAR-10")
    assert "data.root=PATH" in message and "data=synthetic" in message and "\n" not in message
    with pytest.raises(UserError, match=r"data.root=.*expects train/ and test/"):
        load_source("cifar10_cat", root=tmp_path)
    with pytest.raises(UserError, match=r"data.root=.*not found"):
        load_source("cifar10_cat", root=tmp_path / "nowhere")


def test_cifar_download_errors_are_one_line(tmp_path, monkeypatch):
    import torchvision.datasets

    class Failing:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("HTTP Error 503: Service Unavailable\nmore")

    monkeypatch.setattr(cifar, "_has_network", lambda host: True)
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Failing)
    with pytest.raises(UserError, match="downloading CIFAR-10 .* failed: HTTP Error 503") as info:
        resolve_cifar_root(None, tmp_path)
    assert "\n" not in str(info.value) and "data.root=PATH" in str(info.value)


@pytest.mark.skipif(
    not (SHARED_DATA / "cifar10_cat").is_dir(), reason="no ../shared/data/cifar10_cat"
)
def test_real_cifar10_cat_folder(tmp_path):
    loaded = load_source(
        "cifar10_cat", root=SHARED_DATA / "cifar10_cat", cache_dir=tmp_path / "cache"
    )
    report = loaded.report
    assert (report.files_seen, report.distinct, report.unreadable) == (6000, 6000, 0)
    splits = split_loaded(loaded, val_fraction=0.05)
    assert len(splits["test"]) == 1000  # CIFAR's own test cats
    assert len(splits["train"]) + len(splits["val"]) == 5000 and len(splits["val"]) > 150
    pictures = [{bytes(x.numpy()) for x in splits[name]} for name in ("train", "val", "test")]
    assert sum(map(len, pictures)) == len(set.union(*pictures)) == 6000


# --- CatDataModule ------------------------------------------------------------------------


def test_datamodule_keeps_test_images_and_logs_one_line(tmp_path, caplog):
    dm = CatDataModule(
        source="synthetic", synthetic_n=200, image_size=16, batch_size=8, test_fraction=0.1
    )
    with caplog.at_level(logging.INFO, logger="catdiff.lightning.datamodule"):
        dm.prepare_data()
        dm.setup("fit")
    sizes = len(dm.train_images), len(dm.val_images), len(dm.test_images)
    assert sum(sizes) == 200 and min(sizes) > 0
    [line] = [r.getMessage() for r in caplog.records if "data=synthetic" in r.getMessage()]
    assert f"train {sizes[0]}, val {sizes[1]}, test {sizes[2]}" in line and "\n" not in line
    all_images = torch.cat([dm.train_images, dm.val_images, dm.test_images])
    assert len(load_source("synthetic", synthetic_n=0, image_size=16).images) == 0
    assert len({bytes(x.numpy()) for x in all_images}) == 200  # no image in two splits


def test_datamodule_applies_edges_to_every_split():
    dm = CatDataModule(
        source="synthetic", synthetic_n=100, image_size=16, batch_size=4, edges="sobel+gray"
    )
    dm.setup("fit")
    for x in (dm.train_images, dm.val_images, dm.test_images):
        assert x.shape[1:] == (2, 16, 16) and x.dtype == torch.uint8
    assert dm.out_channels == 2


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"source": "kaggle"}, "data.source"),
        ({"edges": "canny"}, "data.edges"),
        ({"edges": "sobel", "channels": 3}, "data.channels"),
        ({"batch_size": 0}, "data.batch_size"),
    ],
)
def test_datamodule_rejects_bad_options(kwargs, key):
    with pytest.raises(UserError, match=key):
        CatDataModule(**kwargs)


def test_datamodule_warns_when_validation_is_empty(caplog):
    # 2 sketches (seed 0): both hash into train; 3 put one in val (pinned by the hash).
    for n, warned in ((2, True), (3, False)):
        caplog.clear()
        dm = CatDataModule(source="synthetic", synthetic_n=n, image_size=16, batch_size=1)
        with caplog.at_level(logging.WARNING, logger="catdiff.lightning.datamodule"):
            dm.setup("fit")
        assert (len(dm.val_images) == 0) == warned
        assert any("left no validation images" in r.getMessage() for r in caplog.records) == warned
