"""Listing the image files under a folder (``data.root``)."""

from __future__ import annotations

import os
from pathlib import Path

from catdiff.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def list_images(root: str | Path) -> list[Path]:
    """All image files under ``root``, recursively, sorted by path.

    Extensions are matched case-insensitively against :data:`IMAGE_EXTENSIONS`. Symlinked
    folders are not descended into (``os.walk(followlinks=False)``), so a link loop cannot
    hang the listing; symlinked files are listed. macOS ``._name`` resource-fork files are
    skipped: they carry an image extension but hold no image.

    Raises:
        UserError: naming ``data.root`` if the folder is missing or holds no images.
    """
    folder = Path(root).expanduser()
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "folder not found"
        raise UserError(f"data.root={root}: {what}; pass data.root=PATH to a folder of images")
    found = [
        Path(dirpath) / name
        for dirpath, _dirnames, filenames in os.walk(folder, followlinks=False)
        for name in filenames
        if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("._")
    ]
    if not found:
        raise UserError(
            f"data.root={root}: no image files ({' '.join(IMAGE_EXTENSIONS)}) found in it "
            "or below; pass data.root=PATH to a folder of images"
        )
    return sorted(found)
