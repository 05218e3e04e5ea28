"""Decoding image files once into one uint8 tensor (N, C, H, W).

Tiny images make per-sample decoding in DataLoader workers the bottleneck; decoding the
whole folder once into memory removes it (8,000 64x64 JPEGs take a few seconds).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm.auto import tqdm

from catdiff.data.dedupe import drop_duplicates
from catdiff.data.files import list_images
from catdiff.errors import UserError

RESAMPLE_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "hamming": Image.Resampling.HAMMING,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}

# What a file that is not a readable image raises somewhere between open() and convert().
UNREADABLE_ERRORS = (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError)

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


@dataclass
class LoadReport:
    """What happened to the files under ``data.root`` (printed as one line at startup)."""

    files_seen: int
    decoded: int
    duplicates_dropped: int
    unreadable: int
    unreadable_examples: list[str] = field(default_factory=list)
    root: str = ""

    @property
    def distinct(self) -> int:
        return self.decoded - self.duplicates_dropped

    def __str__(self) -> str:
        line = (
            f"data.root={self.root}: {self.files_seen} files, {self.distinct} distinct, "
            f"{self.duplicates_dropped} exact duplicates dropped, {self.unreadable} unreadable"
        )
        if self.unreadable_examples:
            line += f" (e.g. {', '.join(self.unreadable_examples)})"
        return line


def _to_mode(img: Image.Image, mode: str) -> Image.Image:
    """Convert any Pillow image to "L" or "RGB" the way a viewer would show it.

    Transparent pixels are composited on white (Pillow's plain convert would expose whatever
    colour hides under them); 16-bit and 32-bit integer grey is scaled by 1/257 (Pillow's
    convert clips it, turning most of a 16-bit image white); float grey is read as 0..1 when
    its maximum is at most 1, else as 0..255; everything else (P, 1, CMYK, YCbCr, ...) goes
    through Pillow's own conversion.
    """
    if img.mode == mode:
        return img
    if img.mode in _SIXTEEN_BIT_MODES or img.mode == "F":
        grey = np.asarray(img, dtype=np.float32)
        if img.mode != "F":
            grey = grey / 257.0
        elif grey.size and float(np.nanmax(grey)) <= 1.0:
            grey = grey * 255.0
        img = Image.fromarray(np.clip(np.rint(np.nan_to_num(grey)), 0, 255).astype(np.uint8))
        return img if mode == "L" else img.convert(mode)
    if img.mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return img.convert(mode)


def _decode_one(
    path: str | Path, image_size: int, mode: str, resample: Image.Resampling
) -> np.ndarray:
    """One file -> uint8 array (H, W) for "L" or (H, W, 3) for "RGB", centre-cropped square."""
    with Image.open(path) as img:
        if min(img.size) >= 4 * image_size:
            # JPEG only: let libjpeg decode at 1/2, 1/4 or 1/8 scale, keeping >= 2x the target.
            img.draft(None, (2 * image_size, 2 * image_size))
        ImageOps.exif_transpose(img, in_place=True)
        img = _to_mode(img, mode)
        w, h = img.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        img = img.resize(
            (image_size, image_size), resample, box=(left, top, left + side, top + side)
        )
        return np.asarray(img)


def _check_options(image_size: int, channels: int, resample: str) -> None:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise UserError(f"data.image_size={image_size} must be a positive integer, e.g. 28")
    if channels not in (1, 3):
        raise UserError(f"data.channels={channels} must be 1 (grey) or 3 (RGB)")
    if resample not in RESAMPLE_FILTERS:
        raise UserError(f"data.resample={resample!r} must be one of {', '.join(RESAMPLE_FILTERS)}")


def decode_images(
    paths: Sequence[str | Path],
    image_size: int = 28,
    channels: int = 1,
    resample: str = "bicubic",
    progress: bool = False,
) -> tuple[torch.Tensor, list[int]]:
    """Decode image files into one uint8 tensor, skipping (not crashing on) unreadable ones.

    Each file is opened with Pillow, EXIF-rotated, converted to grey ("L", channels=1) or
    "RGB" (channels=3) by :func:`_to_mode` (palette + transparency, CMYK, 16-bit handled),
    centre-cropped to a square and resized to ``image_size`` with the ``resample`` filter.

    Args:
        paths: image files, e.g. from :func:`catdiff.data.files.list_images`.
        image_size: output side length in pixels (``data.image_size``).
        channels: 1 for grey, 3 for RGB (``data.channels``).
        resample: Pillow filter name: nearest, box, bilinear, hamming, bicubic, lanczos.
        progress: show a tqdm progress bar.

    Returns:
        ``(images, unreadable)``: uint8 tensor (N_ok, C, image_size, image_size) in the order
        of ``paths``, and the indices into ``paths`` of the files that could not be decoded.
    """
    _check_options(image_size, channels, resample)
    mode = "L" if channels == 1 else "RGB"
    resample_filter = RESAMPLE_FILTERS[resample]
    paths = list(paths)
    out = np.empty((len(paths), channels, image_size, image_size), dtype=np.uint8)
    unreadable: list[int] = []
    n = 0
    with warnings.catch_warnings():
        # Odd-but-readable files (bad EXIF, palette quirks) should not flood the log.
        warnings.simplefilter("ignore", UserWarning)
        for i, path in enumerate(tqdm(paths, desc="decode", unit="img", disable=not progress)):
            try:
                pixels = _decode_one(path, image_size, mode, resample_filter)
            except UNREADABLE_ERRORS:
                unreadable.append(i)
                continue
            out[n] = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
            n += 1
    return torch.from_numpy(out[:n].copy() if n < len(paths) else out), unreadable


def load_folder(
    root: str | Path,
    image_size: int = 28,
    channels: int = 1,
    resample: str = "bicubic",
    progress: bool = False,
) -> tuple[torch.Tensor, list[str], LoadReport]:
    """List, decode and de-duplicate every image under ``root`` (``data.root``).

    Returns:
        ``(images, keys, report)``: distinct uint8 images (N, C, H, W), their content keys
        (feed them to :func:`catdiff.data.dedupe.split_by_hash`), and a :class:`LoadReport`.

    Raises:
        UserError: naming ``data.root`` if the folder is missing, empty, or nothing decodes.
    """
    paths = list_images(root)
    images, unreadable = decode_images(paths, image_size, channels, resample, progress)
    examples = [str(paths[i]) for i in unreadable[:3]]
    if images.shape[0] == 0:
        raise UserError(
            f"data.root={root}: none of the {len(paths)} image files could be decoded "
            f"(e.g. {', '.join(examples)}); pass data.root=PATH to a folder of readable images"
        )
    unique, keys, dropped = drop_duplicates(images)
    report = LoadReport(
        files_seen=len(paths),
        decoded=images.shape[0],
        duplicates_dropped=dropped,
        unreadable=len(unreadable),
        unreadable_examples=examples,
        root=str(root),
    )
    return unique, keys, report
