"""Listing the image files under a folder (``data.root``), optionally filtered (``data.include``)."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence
from pathlib import Path

from catdiff.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")

_GLOB_CHARS = frozenset("*?[")


def _as_patterns(include: str | Sequence[str] | None) -> list[str]:
    if include is None:
        return []
    if isinstance(include, str):
        include = [include]
    patterns = [str(p).strip().strip("/") for p in include]
    return [p for p in patterns if p]


def matches_include(relative: str, patterns: Sequence[str]) -> bool:
    """Whether a ``/``-separated path relative to ``data.root`` passes ``data.include``: a
    plain pattern names a sub-folder or file, one with ``*?[`` is an ``fnmatch`` glob over the
    whole path (``*`` crosses ``/``); no patterns keep everything."""
    if not patterns:
        return True
    for pattern in patterns:
        if _GLOB_CHARS.isdisjoint(pattern):
            if relative == pattern or relative.startswith(pattern + "/"):
                return True
        elif fnmatch.fnmatchcase(relative, pattern):
            return True
    return False


def printable(name: str) -> str:
    """A file name with its non-UTF-8 bytes (lone surrogates) shown as ``\\xNN``."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def list_relative(
    root: str | Path,
    include: str | Sequence[str] | None = None,
    skipped: list[str] | None = None,
) -> list[str]:
    """:func:`list_images` as ``/``-separated strings relative to ``root`` (fast: listing is
    most of a warm start). Non-UTF-8 paths are left out and appended to ``skipped``."""
    folder = Path(root).expanduser()
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "folder not found"
        raise UserError(f"data.root={root}: {what}; pass data.root=PATH to a folder of images")
    top = str(folder)
    found: list[str] = []
    for dirpath, _dirnames, filenames in os.walk(top, followlinks=False):
        rel_dir = os.path.relpath(dirpath, top).replace(os.sep, "/")
        prefix = "" if rel_dir == "." else rel_dir + "/"
        for name in filenames:
            if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("._"):
                if _is_utf8(prefix + name):
                    found.append(prefix + name)
                elif skipped is not None:
                    skipped.append(printable(prefix + name))
    if not found:
        raise UserError(
            f"data.root={root}: no image files ({' '.join(IMAGE_EXTENSIONS)}) found in it "
            "or below; pass data.root=PATH to a folder of images"
        )
    patterns = _as_patterns(include)
    if patterns:
        kept = [rel for rel in found if matches_include(rel, patterns)]
        if not kept:
            raise UserError(
                f"data.include={patterns} keeps none of the {len(found)} image files under "
                f"data.root={root}; give sub-folders or globs relative to data.root, or null"
            )
        found = kept
    found.sort(key=lambda rel: rel.split("/"))  # the order of sorted(Path, ...): by parts
    return found


def list_images(root: str | Path, include: str | Sequence[str] | None = None) -> list[Path]:
    """All image files under ``root``, recursively, sorted, kept by ``include``. Symlinked
    folders are not descended into (no link loops); macOS ``._name`` files are skipped."""
    folder = Path(root).expanduser()
    return [folder / rel for rel in list_relative(root, include)]


def file_stats(paths: Sequence[str | Path]) -> list[tuple[int, int]]:
    """``(size, mtime_ns)`` of each file (following symlinks); ``(-1, -1)`` where stat fails."""
    stats = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            stats.append((-1, -1))
        else:
            stats.append((st.st_size, st.st_mtime_ns))
    return stats
