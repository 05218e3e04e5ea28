"""Decoding image files once into one uint8 tensor (N, C, H, W), skipping files that are not.

Each file is read once and hashed: a byte-identical copy is not decoded again, and anything
that is not a readable image (empty, truncated, a decompression bomb, vanished, a symlink
loop) is skipped and counted, never raised.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
import struct
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm.auto import tqdm

from catdiff.data.dedupe import unique_indices
from catdiff.data.files import list_images
from catdiff.errors import UserError

_FILTER_NAMES = ("nearest", "box", "bilinear", "hamming", "bicubic", "lanczos")
RESAMPLE_FILTERS = {name: Image.Resampling[name.upper()] for name in _FILTER_NAMES}

# ``data.crop``: the largest centred square, or the whole image squeezed into the square.
CROP_MODES = ("center", "none")

# What a file that is not a readable image raises somewhere between open() and convert().
UNREADABLE_ERRORS = (
    UnidentifiedImageError,
    OSError,
    ValueError,
    EOFError,
    SyntaxError,
    struct.error,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)

# Files larger than this are hashed by streaming and decoded from disk, not read into memory.
_READ_WHOLE_LIMIT = 64 << 20

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


@dataclass
class LoadReport:
    """What a source found, one line at startup; ``train``/``val``/``test`` from the split."""

    files_seen: int
    decoded: int
    duplicates_dropped: int
    unreadable: int
    unreadable_examples: list[str] = field(default_factory=list)
    root: str = ""
    label: str = ""  # the line's prefix; default "data.root=<root>"
    noun: str = "files"  # what files_seen counts ("files", "images", "sketches")
    train: int | None = None
    val: int | None = None
    test: int | None = None
    cache: str = ""  # "", "built <path>", "loaded <path>", "off"

    @property
    def distinct(self) -> int:
        return self.decoded - self.duplicates_dropped

    def __str__(self) -> str:
        prefix = self.label or f"data.root={self.root}"
        line = (
            f"{prefix}: {self.files_seen} {self.noun}, {self.distinct} distinct, "
            f"{self.duplicates_dropped} exact duplicates dropped, "
            f"{self.unreadable} unreadable skipped"
        )
        if self.unreadable_examples:
            line += f" (e.g. {', '.join(self.unreadable_examples)})"
        if self.train is not None:
            line += f"; train {self.train}, val {self.val}, test {self.test}"
        if self.cache:
            line += f"; decode cache {self.cache}"
        return line

    def counts(self) -> dict:
        """The plain fields (ints, strings, lists): what the decode cache stores."""
        keys = ("files_seen", "decoded", "duplicates_dropped", "unreadable")
        keys += ("unreadable_examples", "root", "label", "noun")
        out = {k: getattr(self, k) for k in keys}
        out["unreadable_examples"] = list(self.unreadable_examples)
        return out


def _to_mode(img: Image.Image, mode: str) -> Image.Image:
    """Any Pillow image as "L" or "RGB", as a viewer shows it: transparency on white, 16/32-bit
    grey scaled by 1/257 (Pillow's convert clips it), float grey as 0..1 when its maximum is
    at most 1 else 0..255, everything else through Pillow's own conversion."""
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


def prepare_image(
    img: Image.Image,
    image_size: int,
    mode: str,
    resample: Image.Resampling,
    crop: str = "center",
) -> np.ndarray:
    """An open image -> uint8 (H, W) or (H, W, 3): EXIF-rotated, converted, cropped and
    resized to ``image_size`` in one Pillow call."""
    ImageOps.exif_transpose(img, in_place=True)
    img = _to_mode(img, mode)
    w, h = img.size
    if crop == "center":
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        box = (left, top, left + side, top + side)
    else:
        box = (0, 0, w, h)
    return np.asarray(img.resize((image_size, image_size), resample, box=box))


def _check_pixels(img: Image.Image) -> None:
    """DecompressionBombError above ``Image.MAX_IMAGE_PIXELS`` (Pillow stops only at twice it)."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and img.width * img.height > limit:
        raise Image.DecompressionBombError(
            f"decompression bomb: {img.width}x{img.height} = {img.width * img.height} pixels "
            f"> PIL.Image.MAX_IMAGE_PIXELS = {limit}"
        )


def _decode_one(
    source: str | Path | io.BytesIO,
    image_size: int,
    mode: str,
    resample: Image.Resampling,
    crop: str = "center",
) -> np.ndarray:
    """One file (a path or its bytes) -> uint8 array, see :func:`prepare_image`."""
    with Image.open(source) as img:
        _check_pixels(img)
        if crop == "center" and min(img.size) >= 4 * image_size:
            # JPEG only: let libjpeg decode at 1/2, 1/4 or 1/8 scale, keeping >= 2x the target.
            img.draft(None, (2 * image_size, 2 * image_size))
        return prepare_image(img, image_size, mode, resample, crop)


def unreadable_reason(error: BaseException) -> str:
    """A few words on why a file could not be decoded (shown in the load report)."""
    if isinstance(error, Image.DecompressionBombError | Image.DecompressionBombWarning):
        return "decompression bomb"
    if isinstance(error, FileNotFoundError):
        return "vanished"
    if isinstance(error, OSError) and error.errno == errno.ELOOP:
        return "symlink loop"
    if isinstance(error, IsADirectoryError):
        return "a folder"
    if isinstance(error, OSError) and error.errno == errno.EINVAL and error.strerror:
        return error.strerror.split(" (")[0]  # "not a regular file"
    if isinstance(error, OSError) and error.errno == errno.ENXIO:
        return "not a regular file"
    if isinstance(error, UnidentifiedImageError):
        return "not an image"
    text = str(error).splitlines()[0] if str(error).strip() else type(error).__name__
    if "truncated" in text:
        return "truncated"
    return text if len(text) <= 60 else text[:57] + "..."


def _check_options(image_size: int, channels: int, resample: str, crop: str = "center") -> None:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise UserError(f"data.image_size={image_size} must be a positive integer, e.g. 28")
    if channels not in (1, 3):
        raise UserError(f"data.channels={channels} must be 1 (grey) or 3 (RGB)")
    if resample not in RESAMPLE_FILTERS:
        raise UserError(f"data.resample={resample!r} must be one of {', '.join(RESAMPLE_FILTERS)}")
    if crop not in CROP_MODES:
        raise UserError(f"data.crop={crop!r} must be one of {', '.join(CROP_MODES)}")


@dataclass
class DecodedFiles:
    """One image per distinct readable byte string; ``row[i]`` is the row of ``images``
    holding file ``i`` (-1: unreadable, and ``reasons[i]`` says why)."""

    images: torch.Tensor
    row: list[int]
    reasons: dict[int, str]

    @property
    def unreadable(self) -> list[int]:
        return [i for i, r in enumerate(self.row) if r < 0]


def _read(path: str | Path) -> tuple[bytes | None, bytes]:
    """(bytes, or None if too large to hold; SHA-1 digest). Only regular files are read: a
    FIFO named ``x.png`` would block forever, a linked ``/dev/zero`` never end."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a FIFO, socket or device)")
        os.set_blocking(fd, True)
        if info.st_size <= _READ_WHOLE_LIMIT:
            data = f.read()
            return data, hashlib.sha1(data).digest()
        h = hashlib.sha1()
        while chunk := f.read(1 << 20):
            h.update(chunk)
        return None, h.digest()


def decode_files(
    paths: Sequence[str | Path],
    image_size: int = 28,
    channels: int = 1,
    resample: str = "bicubic",
    crop: str = "center",
    progress: bool = False,
) -> DecodedFiles:
    """Read every file once, decode each distinct byte string once (see :func:`decode_images`)."""
    _check_options(image_size, channels, resample, crop)
    mode = "L" if channels == 1 else "RGB"
    resample_filter = RESAMPLE_FILTERS[resample]
    paths = list(paths)
    out = np.empty((len(paths), channels, image_size, image_size), dtype=np.uint8)
    row: list[int] = []
    reasons: dict[int, str] = {}
    by_digest: dict[bytes, int] = {}  # digest -> row, or -1 for bytes that did not decode
    bad_reason: dict[bytes, str] = {}
    n = 0
    with warnings.catch_warnings():
        # Quiet odd-but-readable files; a file just below the bomb limit is an error too.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        for i, path in enumerate(tqdm(paths, desc="decode", unit="img", disable=not progress)):
            try:
                data, digest = _read(path)
                reason = "empty file" if data == b"" else None
            except OSError as error:  # vanished, symlink loop, a folder, permissions
                reason = unreadable_reason(error)
            if reason is not None:
                row.append(-1)
                reasons[i] = reason
                continue
            if digest in by_digest:  # a byte-identical copy: same pixels, same fate
                row.append(by_digest[digest])
                if digest in bad_reason:
                    reasons[i] = bad_reason[digest]
                continue
            source = io.BytesIO(data) if data is not None else path
            try:
                pixels = _decode_one(source, image_size, mode, resample_filter, crop)
            except UNREADABLE_ERRORS as error:
                by_digest[digest] = -1
                bad_reason[digest] = reasons[i] = unreadable_reason(error)
                row.append(-1)
                continue
            out[n] = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
            by_digest[digest] = n
            row.append(n)
            n += 1
    images = torch.from_numpy(out[:n].copy() if n < len(paths) else out)
    return DecodedFiles(images=images, row=row, reasons=reasons)


def decode_images(
    paths: Sequence[str | Path],
    image_size: int = 28,
    channels: int = 1,
    resample: str = "bicubic",
    progress: bool = False,
    crop: str = "center",
) -> tuple[torch.Tensor, list[int]]:
    """``(images, unreadable)``: uint8 (N_ok, C, S, S) in the order of ``paths``, and the
    indices of the files that could not be decoded."""
    decoded = decode_files(paths, image_size, channels, resample, crop, progress)
    rows = [r for r in decoded.row if r >= 0]
    images = decoded.images
    if rows != list(range(len(images))):
        images = images[rows]
    return images, decoded.unreadable


@dataclass
class LoadedImages:
    """Distinct uint8 images (N, C, H, W) of a source with their content keys; ``fixed_test``
    (N,) marks the source's own test split (CIFAR-10's), or None."""

    images: torch.Tensor
    keys: list[str]
    report: LoadReport
    fixed_test: torch.Tensor | None = None


def all_decoded(images: torch.Tensor, test_count: int | None = None, **report: str) -> LoadedImages:
    """Images that all decoded (a source without files), exact duplicates dropped; the first
    ``test_count`` are the source's own test split."""
    keep, keys = unique_indices(images)
    n = len(images)
    counts = LoadReport(n, n, n - len(keep), 0, **report)
    fixed_test = None
    if test_count is not None:
        fixed_test = torch.tensor([i < test_count for i in keep], dtype=torch.bool)
    return LoadedImages(images[keep].contiguous(), keys, counts, fixed_test)


def _short(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    return str(path)


def load_files(
    paths: Sequence[str | Path],
    image_size: int = 28,
    channels: int = 1,
    resample: str = "bicubic",
    crop: str = "center",
    progress: bool = False,
    root: str | Path | None = None,
    label: str = "",
    test_count: int = 0,
) -> LoadedImages:
    """Decode ``paths`` and drop exact duplicates; the first ``test_count`` paths are the
    source's own test split (a duplicate keeps the first copy, so test wins over train)."""
    paths = list(paths)
    base = Path(root) if root is not None else None
    decoded = decode_files(paths, image_size, channels, resample, crop, progress)
    bad = decoded.unreadable
    examples = [f"{_short(Path(paths[i]), base)} ({decoded.reasons[i]})" for i in bad[:3]]
    where = label or f"data.root={root}"
    if decoded.images.shape[0] == 0:
        raise UserError(
            f"{where}: none of the {len(paths)} image files could be decoded "
            f"(e.g. {', '.join(examples)}); pass data.root=PATH to a folder of readable images"
        )
    keep, keys = unique_indices(decoded.images)
    images = decoded.images[keep] if len(keep) < len(decoded.images) else decoded.images
    fixed_test = None
    if test_count:
        first_file: dict[int, int] = {}  # row -> the first file holding it
        for i, r in enumerate(decoded.row):
            first_file.setdefault(r, i)
        fixed_test = torch.tensor([first_file[r] < test_count for r in keep], dtype=torch.bool)
    readable = len(paths) - len(bad)
    report = LoadReport(
        files_seen=len(paths),
        decoded=readable,
        duplicates_dropped=readable - len(keep),
        unreadable=len(bad),
        unreadable_examples=examples,
        root=str(root) if root is not None else "",
        label=label,
    )
    return LoadedImages(images.contiguous(), keys, report, fixed_test)


def load_folder(
    root: str | Path,
    image_size: int = 28,
    channels: int = 1,
    resample: str = "bicubic",
    progress: bool = False,
    crop: str = "center",
    include: str | Sequence[str] | None = None,
) -> tuple[torch.Tensor, list[str], LoadReport]:
    """List, decode and de-duplicate every image under ``root``, no cache."""
    paths = list_images(root, include)
    loaded = load_files(paths, image_size, channels, resample, crop, progress, root=root)
    return loaded.images, loaded.keys, loaded.report
