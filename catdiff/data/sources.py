"""The data sources (``data=<name>``) behind one call, and their train/val/test split.

``load_source`` finds the images of a source (downloading once where it can), decodes them
once through the on-disk cache (:mod:`catdiff.data.cache`), drops exact duplicates and
returns them with a :class:`LoadReport`; ``split_loaded`` splits by content hash (or by the
source's own test set) and fills in the report's train/val/test counts.

Sources:
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
    """Every image under ``root`` (filtered by ``include``), through the decode cache. With
    ``test_subfolder`` (CIFAR's layout) the files under it come first and form the source's
    own test split; files outside ``train/`` and it are ignored."""
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
    """The distinct images of ``source`` (see the module docstring), decoded once.

    Unreadable files are skipped and logged as one warning (also on a cache hit: they are
    still there). ``cache_dir`` None or "" turns the decode cache off.
    """
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
    """``{"train", "val", "test"}`` -> uint8 images, split by content hash
    (:func:`~catdiff.data.dedupe.split_by_hash`); fills in ``loaded.report.train/val/test``.

    A source with its own test set (``loaded.fixed_test``, CIFAR-10) keeps it as the test
    split; ``test_fraction`` is then not used and the rest is split into train and val.
    """
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
