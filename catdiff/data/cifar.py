"""The cat class of CIFAR-10 (label 3), with CIFAR's own train/test split (``data=cifar10_cat``).

Dataset: Krizhevsky, 2009: 5,000 training and 1,000 test cats, 32x32 RGB. Either a folder
with ``train/`` and ``test/`` images, or torchvision's ``cifar-10-batches-py``, looked for in
``data.root``, ``<data_dir>/cifar10_cat``, ``<data_dir>/cifar10``, else downloaded there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from catdiff.data.catfaces import _first_line, _has_network
from catdiff.data.decode import (
    RESAMPLE_FILTERS,
    LoadedImages,
    _check_options,
    all_decoded,
    prepare_image,
)
from catdiff.errors import UserError

CAT_LABEL = 3
TORCHVISION_FOLDER = "cifar-10-batches-py"
BATCH_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5")
TEST_FILE = "test_batch"
LOCAL_FOLDER = "cifar10_cat"  # folder layout placed under data_dir
DOWNLOAD_FOLDER = "cifar10"  # torchvision root under data_dir
DOWNLOAD_HOST = "www.cs.toronto.edu"

LAYOUT = (
    "train/ and test/ sub-folders of images (like ../shared/data/cifar10_cat) "
    f"or torchvision's {TORCHVISION_FOLDER} folder"
)
NO_NETWORK = (
    "no network to download CIFAR-10: pass data.root=PATH (a folder with "
    f"{LAYOUT}) or use data=synthetic for an offline demo"
)


def is_folder_layout(folder: Path) -> bool:
    return (folder / "train").is_dir() and (folder / "test").is_dir()


def torchvision_files(root: Path) -> list[Path]:
    """The pickles torchvision reads, in a fixed order (they key the decode cache)."""
    base = root / TORCHVISION_FOLDER
    return [base / name for name in (TEST_FILE, *BATCH_FILES, "batches.meta")]


def _download(root: Path) -> None:
    from torchvision.datasets import CIFAR10  # imported here: only the first, online run

    try:
        CIFAR10(str(root), train=True, download=True)
    except Exception as error:  # urllib, tarfile, integrity errors: the user needs one line
        raise UserError(
            f"downloading CIFAR-10 into {root} failed: {_first_line(error)}; "
            f"pass data.root=PATH (a folder with {LAYOUT}) or use data=synthetic"
        ) from None


def resolve_cifar_root(root: str | Path | None, data_dir: str | Path) -> tuple[str, Path]:
    """``("folder", path)`` or ``("torchvision", root holding cifar-10-batches-py)``."""
    if root is not None and str(root) != "":
        folder = Path(root).expanduser()
        if not folder.is_dir():
            raise UserError(f"data.root={root}: folder not found; pass data.root=PATH to {LAYOUT}")
        if is_folder_layout(folder):
            return "folder", folder
        if (folder / TORCHVISION_FOLDER).is_dir():
            return "torchvision", folder
        if folder.name == TORCHVISION_FOLDER:
            return "torchvision", folder.parent
        raise UserError(f"data.root={root}: data=cifar10_cat expects {LAYOUT}")
    data_dir = Path(data_dir).expanduser()
    local = data_dir / LOCAL_FOLDER
    if is_folder_layout(local):
        return "folder", local
    download = data_dir / DOWNLOAD_FOLDER
    if (download / TORCHVISION_FOLDER).is_dir():
        return "torchvision", download
    if not _has_network(DOWNLOAD_HOST):
        raise UserError(NO_NETWORK)
    _download(download)
    return "torchvision", download


def _cat_arrays(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """(test cats, train cats) as uint8 (N, 32, 32, 3) through ``torchvision.datasets.CIFAR10``."""
    from torchvision.datasets import CIFAR10

    try:
        test = CIFAR10(str(root), train=False, download=False)
        train = CIFAR10(str(root), train=True, download=False)
    except Exception as error:  # "Dataset not found or corrupted", unpickling errors
        raise UserError(
            f"data.root={root}: torchvision could not read {TORCHVISION_FOLDER} "
            f"({_first_line(error)}); delete it to download again, or pass data.root=PATH "
            f"to {LAYOUT}"
        ) from None
    pick = [ds.data[np.asarray(ds.targets) == CAT_LABEL] for ds in (test, train)]
    return pick[0], pick[1]


def load_torchvision_cats(
    root: str | Path,
    image_size: int = 28,
    channels: int = 1,
    resample: str = "bicubic",
    crop: str = "center",
) -> LoadedImages:
    """CIFAR-10 cats from torchvision's pickles, resized like files are; the test cats are
    marked ``fixed_test`` (a picture in both sets stays in test only)."""
    _check_options(image_size, channels, resample, crop)
    root = Path(root)
    test, train = _cat_arrays(root)
    mode = "L" if channels == 1 else "RGB"
    filt = RESAMPLE_FILTERS[resample]
    arrays = np.concatenate([test, train])
    out = np.empty((len(arrays), channels, image_size, image_size), dtype=np.uint8)
    for i, rgb in enumerate(arrays):
        pixels = prepare_image(Image.fromarray(rgb), image_size, mode, filt, crop)
        out[i] = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
    label = f"data=cifar10_cat ({root / TORCHVISION_FOLDER})"
    return all_decoded(torch.from_numpy(out), len(test), root=str(root), label=label, noun="images")
