"""Messy folders: every kind of bad input, made by the test, is skipped and counted or
stops with one line naming data.root, never a traceback or a hang."""

from __future__ import annotations

import logging
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import catdiff.data.sources as sources
from catdiff.data import decode_images, list_images, load_files, load_source
from catdiff.errors import UserError
from catdiff.lightning.datamodule import CatDataModule
from tests.test_cli import run


def noise(size=(48, 48), channels=3, seed=0) -> Image.Image:
    shape = (size[1], size[0], channels) if channels > 1 else (size[1], size[0])
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8))


def png_claiming_size(width: int, height: int) -> bytes:
    """A small valid PNG whose header (IHDR) claims ``width`` x ``height`` pixels."""
    import io

    buffer = io.BytesIO()
    Image.new("L", (8, 8), 0).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def load(root: Path, **kwargs):
    return load_source("folder", root=root, image_size=16, **kwargs)


# --- readable oddities --------------------------------------------------------------------


def test_odd_but_readable_files_decode(tmp_path):
    Image.new("CMYK", (32, 32), (0, 0, 0, 255)).save(tmp_path / "cmyk.jpg")
    palette = Image.new("P", (20, 20), 0)
    palette.putpalette([0, 0, 0] * 256)
    palette.save(tmp_path / "palette.png", transparency=0)  # all transparent: white
    Image.fromarray(np.full((30, 30), 100 * 257, dtype=np.uint16)).save(tmp_path / "grey16.png")
    Image.new("L", (1, 1), 7).save(tmp_path / "one_pixel.png")
    wide = np.zeros((3, 3000), dtype=np.uint8)
    wide[:, 1490:1510] = 200  # only the centred 3x3 square is kept: all 200
    Image.fromarray(wide).save(tmp_path / "wide.png")
    names = ["cmyk.jpg", "grey16.png", "one_pixel.png", "palette.png", "wide.png"]
    images, bad = decode_images(list_images(tmp_path), image_size=16)
    assert bad == [] and images.shape == (5, 1, 16, 16)
    means = dict(zip(names, images.float().mean((1, 2, 3)).tolist()))
    assert means == pytest.approx(
        {"cmyk.jpg": 0, "grey16.png": 100, "one_pixel.png": 7, "palette.png": 255, "wide.png": 200},
        abs=2,
    )


# --- unreadable files: skipped, counted, named, warned about ------------------------------


def test_unreadable_files_are_skipped_counted_and_named(tmp_path, caplog):
    noise(seed=1).save(tmp_path / "good.jpg")
    noise(seed=2).save(tmp_path / "good2.png")
    (tmp_path / "a_empty.jpg").write_bytes(b"")
    whole = (tmp_path / "good.jpg").read_bytes()
    (tmp_path / "b_truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "c_text.jpg").write_text("definitely not a JPEG\n")
    (tmp_path / "d_bomb.png").write_bytes(png_claiming_size(100_000, 100_000))
    os.symlink("e_loop.jpg", tmp_path / "e_loop.jpg")  # a file link that points at itself
    os.symlink(tmp_path, tmp_path / "folder_loop")  # a folder link loop: never descended

    with caplog.at_level(logging.WARNING, logger="catdiff.data"):
        loaded = load(tmp_path)
    report = loaded.report
    assert loaded.images.shape == (2, 1, 16, 16)
    assert (report.files_seen, report.decoded, report.unreadable) == (7, 2, 5)
    line = str(report)
    assert "\n" not in line and "5 unreadable skipped" in line
    assert "a_empty.jpg (empty file)" in line and "b_truncated.jpg (truncated)" in line
    assert "c_text.jpg (not an image)" in line  # the first three, with reasons
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "skipped 5 unreadable of 7 files" in warning and "data.root=" in warning

    _, bad = decode_images([tmp_path / "d_bomb.png", tmp_path / "e_loop.jpg"])
    assert bad == [0, 1]
    decoded = load_files([tmp_path / "d_bomb.png", tmp_path / "e_loop.jpg", tmp_path / "good.jpg"])
    assert decoded.report.unreadable_examples == [
        f"{tmp_path / 'd_bomb.png'} (decompression bomb)",
        f"{tmp_path / 'e_loop.jpg'} (symlink loop)",
    ]


def test_pillows_pixel_limit_is_an_error_not_a_slow_decode(tmp_path, monkeypatch):
    # Between MAX_IMAGE_PIXELS and twice it Pillow only warns and goes on decoding; here it
    # is refused too. 40 x 40 = 1600 pixels against a limit of 1000.
    noise(size=(40, 40)).save(tmp_path / "big.png")
    noise(size=(30, 30)).save(tmp_path / "ok.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    images, bad = decode_images(list_images(tmp_path), image_size=8)
    assert bad == [0] and images.shape == (1, 1, 8, 8)


def test_file_deleted_between_listing_and_decoding(tmp_path, monkeypatch):
    for seed in range(3):
        noise(seed=seed).save(tmp_path / f"{seed}.png")
    listed = sources.list_relative

    def list_then_delete(root, include=None, skipped=None):
        found = listed(root, include, skipped)
        (Path(root) / "1.png").unlink()
        return found

    monkeypatch.setattr(sources, "list_relative", list_then_delete)
    loaded = load(tmp_path, cache_dir=tmp_path.parent / f"{tmp_path.name}-cache")
    assert loaded.images.shape[0] == 2 and loaded.report.unreadable == 1
    assert loaded.report.unreadable_examples == ["1.png (vanished)"]


def test_byte_identical_copies_of_a_bad_file_are_all_counted(tmp_path):
    noise().save(tmp_path / "good.png")
    for name in ("bad1.jpg", "bad2.jpg"):
        (tmp_path / name).write_text("same garbage")
    report = load(tmp_path).report
    assert (report.files_seen, report.decoded, report.unreadable) == (3, 1, 2)


# --- folders that give no dataset: one line naming data.root ------------------------------


def test_empty_missing_and_only_unreadable_folders(tmp_path):
    with pytest.raises(UserError, match=r"data.root=.*folder not found"):
        load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"data.root=.*no image files"):
        load(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.jpg").write_bytes(b"")
    (bad / "y.png").write_text("nope")
    with pytest.raises(UserError, match=r"data.root=.*none of the 2 image files") as info:
        load(bad)
    assert "\n" not in str(info.value) and "x.jpg (empty file)" in str(info.value)


def test_fewer_images_than_one_batch_names_data_root(tmp_path):
    for seed in range(5):
        noise(seed=seed).save(tmp_path / f"{seed}.png")
    dm = CatDataModule(source="folder", root=str(tmp_path), image_size=16, batch_size=64)
    with pytest.raises(UserError, match=rf"data.root={tmp_path} has \d training images") as info:
        dm.setup("fit")
    assert "data.batch_size=64" in str(info.value) and "\n" not in str(info.value)


def test_train_cli_stops_with_one_line(tmp_path):
    # One subprocess (~10 s of imports on 2 busy cores); the other cases share this path.
    root = tmp_path / "cats"
    root.mkdir()
    (root / "a.jpg").write_text("not an image")
    proc = run(
        [
            "catdiff.train",
            "data=folder",
            f"data.root={root}",
            f"paths.data_dir={tmp_path / 'data'}",
            f"hydra.run.dir={tmp_path / 'run'}",
            "logger=csv",
        ],
        check=False,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: data.root=") and str(root) in last


def test_decode_result_is_a_plain_uint8_tensor(tmp_path):
    noise().save(tmp_path / "a.png")
    loaded = load(tmp_path)
    assert loaded.images.dtype == torch.uint8 and loaded.images.is_contiguous()


# --- special files and names ----------------------------------------------------------------


def _with_alarm(seconds: int):
    """Fail instead of hanging: SIGALRM interrupts a blocking open()."""
    import signal

    def expired(signum, frame):
        raise TimeoutError(f"hung for {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    return lambda: (signal.alarm(0), signal.signal(signal.SIGALRM, previous))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifos_and_devices_among_the_images_are_skipped_and_counted(tmp_path):
    for i in range(3):
        noise(seed=i).save(tmp_path / f"{i}.png")
    os.mkfifo(tmp_path / "pipe.png")  # opening it for reading would wait for a writer forever
    os.symlink("/dev/zero", tmp_path / "zeros.png")  # would never end
    restore = _with_alarm(60)
    try:
        loaded = load(tmp_path, cache_dir=None)
    finally:
        restore()
    report = loaded.report
    assert loaded.images.shape[0] == 3
    assert report.files_seen == 5 and report.unreadable == 2
    assert "pipe.png (not a regular file)" in str(report)
    assert "zeros.png (not a regular file)" in str(report)


def test_names_that_are_not_utf8_are_skipped_and_counted(tmp_path):
    for i in range(3):
        noise(seed=i).save(tmp_path / f"{i}.png")
    odd = os.path.join(os.fsencode(tmp_path), b"caf\xe9.png")
    noise(seed=9).save(odd.decode("utf-8", "surrogateescape"))
    for cache_dir in (tmp_path / "cache", tmp_path / "cache"):  # built, then loaded
        loaded = load(tmp_path, cache_dir=cache_dir)
        report = loaded.report
        assert loaded.images.shape[0] == 3
        assert report.files_seen == 4 and report.unreadable == 1
        line = str(report)
        assert "caf\\xe9.png (name is not UTF-8)" in line
        line.encode("utf-8")  # printable: no lone surrogates reach the log
