"""Decode once: the on-disk cache is keyed by files and options, atomic, and self-healing."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import catdiff.data.cache as cache
import catdiff.data.decode as decode
import catdiff.files
from catdiff.data import load_source
from catdiff.lightning.datamodule import CatDataModule


def write_cats(folder: Path, n: int = 6, start: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for seed in range(start, start + n):
        pixels = np.random.default_rng(seed).integers(0, 256, (20, 24, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{seed:03d}.png")


@pytest.fixture
def folder(tmp_path) -> Path:
    write_cats(tmp_path / "cats")
    return tmp_path / "cats"


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def count_decodes(monkeypatch):
    """How many times files were decoded (decode_files calls)."""
    calls = []
    real = decode.decode_files

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(decode, "decode_files", counting)
    return calls


def load(folder, cache_dir, **kwargs):
    return load_source("folder", root=folder, cache_dir=cache_dir, image_size=12, **kwargs)


def test_second_load_skips_decoding_and_gives_the_same_images(folder, cache_dir, count_decodes):
    cold = load(folder, cache_dir)
    assert cold.report.cache.startswith("built ") and len(count_decodes) == 1
    [slot] = cache_dir.glob("folder-*.pt")
    assert cold.report.cache == f"built {slot}"
    warm = load(folder, cache_dir)
    assert len(count_decodes) == 1 and warm.report.cache == f"loaded {slot}"
    assert torch.equal(warm.images, cold.images) and warm.keys == cold.keys
    assert (
        str(warm.report).split("; decode cache")[0] == str(cold.report).split("; decode cache")[0]
    )
    assert not list(cache_dir.glob(".*.tmp"))  # no temporary left behind


@pytest.mark.parametrize(
    "change",
    [
        "touch",
        "older_mtime_same_size",
        "add",
        "remove",
        "image_size",
        "resample",
        "crop",
        "channels",
    ],
)
def test_any_change_rebuilds(change, folder, cache_dir, count_decodes):
    options = {}
    load(folder, cache_dir)
    first = folder / "000.png"
    if change == "touch":
        st = first.stat()
        os.utime(first, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    elif change == "older_mtime_same_size":  # e.g. a file restored from a backup
        os.utime(first, ns=(0, 1_000_000_000))
    elif change == "add":
        write_cats(folder, n=1, start=50)
    elif change == "remove":
        first.unlink()
    else:
        options = {
            "image_size": {"image_size": 16},
            "resample": {"resample": "lanczos"},
            "crop": {"crop": "none"},
            "channels": {"channels": 3},
        }[change]
    kwargs = {"image_size": 12, **options}
    rebuilt = load_source("folder", root=folder, cache_dir=cache_dir, **kwargs)
    assert len(count_decodes) == 2 and rebuilt.report.cache.startswith("built ")
    again = load_source("folder", root=folder, cache_dir=cache_dir, **kwargs)
    assert len(count_decodes) == 2 and again.report.cache.startswith("loaded ")


def test_options_get_their_own_slot(folder, cache_dir, count_decodes):
    load(folder, cache_dir)
    load_source("folder", root=folder, cache_dir=cache_dir, image_size=16)
    load(folder, cache_dir)  # 12 px again: still cached
    assert len(count_decodes) == 2 and len(list(cache_dir.glob("folder-*.pt"))) == 2


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip_a_pixel", "empty"])
def test_a_damaged_cache_is_ignored_with_a_warning_and_rebuilt(
    damage, folder, cache_dir, caplog, monkeypatch
):
    cold = load(folder, cache_dir)
    [slot] = cache_dir.glob("*.pt")
    data = slot.read_bytes()
    if damage == "truncate":
        slot.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        slot.write_bytes(b"\x00garbage" * 100)
    elif damage == "empty":
        slot.write_bytes(b"")
    else:  # a valid file whose pixels no longer match their checksum
        payload = torch.load(slot, weights_only=True)
        payload["images"][0, 0, 0, 0] ^= 1
        torch.save(payload, slot)
    with caplog.at_level(logging.WARNING, logger="catdiff.data"):
        rebuilt = load(folder, cache_dir)
    assert rebuilt.report.cache.startswith("built ")
    assert torch.equal(rebuilt.images, cold.images)
    assert any(
        "is unreadable" in r.getMessage() and "rebuilding" in r.getMessage() for r in caplog.records
    )
    assert load(folder, cache_dir).report.cache.startswith("loaded ")


def test_a_run_killed_while_writing_leaves_no_valid_looking_cache(folder, cache_dir, monkeypatch):
    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies between writing and renaming

    monkeypatch.setattr(catdiff.files.os, "replace", killed)  # the shared atomic writer
    with pytest.raises(KeyboardInterrupt):
        load(folder, cache_dir)
    assert not list(cache_dir.glob("*.pt")) and not list(cache_dir.glob(".*.tmp"))
    monkeypatch.undo()

    # A SIGKILL leaves its temporary file: it is never read, and old ones are swept.
    load(folder, cache_dir)
    [slot] = cache_dir.glob("*.pt")
    stale = cache_dir / f".{slot.name}.abc123.tmp"
    stale.write_bytes(b"half a file")
    os.utime(stale, (0, 0))
    write_cats(folder, n=1, start=60)  # forces a rebuild, which sweeps
    assert load(folder, cache_dir).report.cache.startswith("built ")
    assert not stale.exists()


def test_unwritable_cache_dir_warns_and_goes_on(folder, tmp_path, caplog):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="catdiff.data"):
        loaded = load(folder, blocker / "cache")
    assert loaded.images.shape[0] == 6 and loaded.report.cache == "built (not written)"
    assert any("could not write the decode cache" in r.getMessage() for r in caplog.records)


def test_cache_off(folder, tmp_path, count_decodes):
    for off in (None, ""):
        assert load(folder, off).report.cache == "off"
    assert len(count_decodes) == 2 and not list(tmp_path.rglob("*.pt"))


def test_fingerprint_covers_every_part():
    files = [("a.png", 10, 1), ("b.png", 20, 2)]
    base = cache.fingerprint({"image_size": 28}, files)
    assert base == cache.fingerprint({"image_size": 28}, list(files))
    others = [
        cache.fingerprint({"image_size": 32}, files),
        cache.fingerprint({"image_size": 28}, files[:1]),
        cache.fingerprint({"image_size": 28}, [("a.png", 11, 1), files[1]]),
        cache.fingerprint({"image_size": 28}, [("a.png", 10, 2), files[1]]),
        cache.fingerprint({"image_size": 28}, [("c.png", 10, 1), files[1]]),
        cache.fingerprint({"image_size": 28}, files[::-1]),
    ]
    assert len({base, *others}) == 7


def test_datamodule_uses_the_cache_and_edges_are_not_cached(folder, cache_dir, count_decodes):
    def datamodule(**kwargs):
        dm = CatDataModule(
            source="folder",
            root=str(folder),
            cache_dir=str(cache_dir),
            image_size=12,
            batch_size=2,
            val_fraction=0.0,
            test_fraction=0.0,
            **kwargs,
        )
        dm.prepare_data()
        dm.setup("fit")
        return dm

    gray = datamodule()
    edges = datamodule(edges="sobel+gray")
    assert len(count_decodes) == 1  # prepare_data + setup decode once; edges reuse the cache
    assert "decode cache loaded" in str(edges.report)
    assert torch.equal(edges.train_images[:, :1], gray.train_images)
    assert edges.train_images.shape[1] == 2
