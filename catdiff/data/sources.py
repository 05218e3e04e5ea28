"""The data sources (``data=<name>``), decoded once through the cache, and their split.

``catfaces``: Kaggle "Cats faces 64x64" (data.root, $CATDIFF_DATA_ROOT, or kagglehub).
``cifar10_cat``: CIFAR-10 label 3, CIFAR's own test split (see :mod:`catdiff.data.cifar`).
``folder``: any tree of images under data.root, optionally filtered by data.include.
``synthetic``: procedural cat sketches, offline (never cached: drawing them is as fast).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from catdiff.data import cache
from catdiff.data.catfaces import resolve_catfaces_root
from catdiff.data.cifar import load_torchvision_cats, resolve_cifar_root, torchvision_files
from catdiff.data.decode import LoadedImages, _check_options, all_decoded, load_files
from catdiff.data.dedupe import split_by_hash
from catdiff.data.files import _as_patterns, file_stats, list_relative
from catdiff.data.synthetic import synthetic_cats
from catdiff.errors import UserError

log = logging.getLogger(__name__)

SOURCES = ("catfaces", "cifar10_cat", "folder", "synthetic")


def _folder_images(
    source: str,
    root: Path,
    include: Sequence[str],
    params: dict,
    cache_dir: str | Path | None,
    progress: bool,
    test_subfolder: str | None = None,
) -> LoadedImages:
    """Every image under ``root`` through the decode cache; with ``test_subfolder`` (CIFAR's
    layout) its files come first and are the test split, and only it and ``train/`` count."""
    skipped: list[str] = []
    relative = list_relative(root, include, skipped)
    test_count = 0
    if test_subfolder is not None:
        test = [r for r in relative if r.startswith(test_subfolder + "/")]
        train = [r for r in relative if r.startswith("train/")]
        if not train:
            raise UserError(f"data.root={root}: no images under {root / 'train'}")
        relative, test_count = test + train, len(test)
    top = str(root)
    paths = [os.path.join(top, r) for r in relative]
    stats = file_stats(paths)
    key = cache.fingerprint(
        {**params, "test_count": test_count},
        ((r, size, mtime) for r, (size, mtime) in zip(relative, stats)),
    )
    slot = {"root": str(root.resolve()), "include": list(include), **params}

    options = [params[k] for k in ("image_size", "channels", "resample", "crop")]

    def build() -> LoadedImages:
        return load_files(paths, *options, progress, root=root, test_count=test_count)

    loaded = cache.cached(cache_dir, source, slot, key, build)
    if skipped:  # counted as unreadable, never fatal
        report = loaded.report
        report.files_seen += len(skipped)
        report.unreadable += len(skipped)
        named = [f"{name} (name is not UTF-8)" for name in skipped[:3]]
        report.unreadable_examples = (report.unreadable_examples + named)[:3]
    return loaded


def _synthetic(n: int, image_size: int, channels: int, seed: int) -> LoadedImages:
    images = synthetic_cats(n, image_size, seed=seed)
    if channels == 3:
        images = images.expand(-1, 3, -1, -1)
    return all_decoded(images, label="data=synthetic", noun="procedural sketches")


def load_source(
    source: str = "catfaces",
    root: str | Path | None = None,
    data_dir: str | Path = "data",
    image_size: int = 28,
    channels: int = 1,
    resample: str = "bicubic",
    crop: str = "center",
    include: str | Sequence[str] | None = None,
    cache_dir: str | Path | None = None,
    synthetic_n: int = 2000,
    seed: int = 0,
    progress: bool = False,
) -> LoadedImages:
    """The distinct images of ``source``; unreadable files are one warning, also on a cache hit."""
    if source not in SOURCES:
        raise UserError(f"data.source={source!r} is not one of {', '.join(SOURCES)}")
    _check_options(image_size, channels, resample, crop)
    if source == "synthetic":
        return _synthetic(synthetic_n, image_size, channels, seed)
    params = dict(
        source=source, image_size=image_size, channels=channels, resample=resample, crop=crop
    )
    patterns = _as_patterns(include)
    if source == "catfaces":
        folder = resolve_catfaces_root(root, data_dir)
        loaded = _folder_images(source, folder, patterns, params, cache_dir, progress)
    elif source == "folder":
        if root is None or str(root) == "":
            raise UserError("data=folder needs data.root=PATH (a folder of cat images)")
        loaded = _folder_images(
            source, Path(root).expanduser(), patterns, params, cache_dir, progress
        )
    else:  # cifar10_cat
        kind, folder = resolve_cifar_root(root, data_dir)
        if kind == "folder":
            loaded = _folder_images(source, folder, patterns, params, cache_dir, progress, "test")
        else:
            files = torchvision_files(folder)
            stats = file_stats(files)
            key = cache.fingerprint(
                {**params, "torchvision": True},
                ((f.name, size, mtime) for f, (size, mtime) in zip(files, stats)),
            )
            slot = {"root": str(folder.resolve()), "torchvision": True, **params}

            def build() -> LoadedImages:
                return load_torchvision_cats(folder, image_size, channels, resample, crop)

            loaded = cache.cached(cache_dir, source, slot, key, build)
    report = loaded.report
    if report.unreadable:
        log.warning(
            "skipped %d unreadable of %d files under data.root=%s (e.g. %s)",
            report.unreadable,
            report.files_seen,
            report.root,
            ", ".join(report.unreadable_examples),
        )
    return loaded


def split_loaded(
    loaded: LoadedImages, val_fraction: float = 0.05, test_fraction: float = 0.05
) -> dict[str, torch.Tensor]:
    """``{"train", "val", "test"}`` uint8 images split by content hash; a source's own test
    set (``fixed_test``) replaces ``test_fraction``. Fills in the report's counts."""
    keys = loaded.keys
    if loaded.fixed_test is not None:
        fixed = loaded.fixed_test.tolist()
        rest = [i for i, is_test in enumerate(fixed) if not is_test]
        split = split_by_hash([keys[i] for i in rest], val_fraction=val_fraction)
        index = {
            "train": [rest[i] for i in split["train"]],
            "val": [rest[i] for i in split["val"]],
            "test": [i for i, is_test in enumerate(fixed) if is_test],
        }
    else:
        index = split_by_hash(keys, val_fraction=val_fraction, test_fraction=test_fraction)
    out = {name: loaded.images[idx].contiguous() for name, idx in index.items()}
    report = loaded.report
    report.train, report.val, report.test = (len(out[k]) for k in ("train", "val", "test"))
    return out
