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
    """Whether a path relative to ``data.root`` (``/``-separated) passes ``data.include``.

    A pattern without glob characters names a sub-folder (or one file): ``train`` keeps
    ``train/...``. A pattern with ``*``, ``?`` or ``[...]`` is an ``fnmatch`` glob over the whole
    relative path, where ``*`` also crosses ``/``: ``*/cat/*`` keeps ``train/cat/1.jpg`` and
    ``test/cat/1.jpg``. No patterns keep everything.
    """
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
    """A file name as text that can be printed and logged: bytes that are not UTF-8 (which
    Python keeps as lone surrogates) shown as ``\\xNN``."""
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
    """:func:`list_images` as ``/``-separated paths relative to ``root`` (same order).

    Strings, not ``Path`` objects: much faster, and listing is most of a warm start. Paths
    that are not valid UTF-8 cannot be named in a cache key, a log line or a report: they are
    left out, and their printable relative paths appended to ``skipped`` when it is given.
    """
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
    """All image files under ``root``, recursively, sorted by path, kept by ``include``
    (``data.include``, see :func:`matches_include`).

    Extensions are matched case-insensitively. Symlinked folders are not descended into, so
    a link loop cannot hang the listing; symlinked files are listed (one that loops is later
    counted as unreadable). macOS ``._name`` resource forks carry an image extension but hold
    no image: skipped. Folders that cannot be read are skipped silently.
    """
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
