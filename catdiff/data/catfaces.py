"""Finding the Kaggle cat faces on disk, or downloading them once.

Dataset: "Cats faces 64x64 (for generative models)", S. Ghosh, 2019, Kaggle (no licence
stated upstream). kagglehub downloads it without credentials into its own cache; we record
where, so later runs need neither the network nor kagglehub.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from catdiff.data.files import IMAGE_EXTENSIONS
from catdiff.errors import UserError

KAGGLE_HANDLE = "spandan2/cats-faces-64x64-for-generative-models"
ENV_VAR = "CATDIFF_DATA_ROOT"
LOCAL_FOLDER = "catfaces64"  # a copy the user placed under data_dir
RECORD_FILE = "catfaces64.path"  # under data_dir: the folder kagglehub downloaded into

NO_NETWORK = (
    "no network to download the Kaggle cat faces: pass data.root=PATH (a folder of cat images) "
    "or use data=synthetic for an offline demo"
)


def _has_network(host: str = "www.kaggle.com", port: int = 443, timeout: float = 3.0) -> bool:
    """Whether a TCP connection opens (behind an HTTPS proxy: assumed, the download reports)."""
    if os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy"):
        return True
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def _image_folder(folder: Path) -> Path:
    """Descend through wrapper folders (no images, one sub-folder), e.g. ``<download>/cats``."""
    while True:
        subfolders = []
        with os.scandir(folder) as entries:  # stops at the first image: cheap on big folders
            for entry in entries:
                if entry.name.lower().endswith(IMAGE_EXTENSIONS) and entry.is_file():
                    return folder
                if not entry.name.startswith(".") and entry.is_dir():
                    subfolders.append(entry.name)
        if len(subfolders) != 1:
            return folder
        folder = folder / subfolders[0]


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _download() -> Path:
    import kagglehub  # imported here: only needed on the first, online run

    try:
        return Path(kagglehub.dataset_download(KAGGLE_HANDLE))
    except Exception as error:  # kagglehub raises many types; the user needs one line
        raise UserError(
            f"downloading the Kaggle cat faces ({KAGGLE_HANDLE}) failed: {_first_line(error)}; "
            "pass data.root=PATH (a folder of cat images) or use data=synthetic"
        ) from None


def resolve_catfaces_root(root: str | Path | None, data_dir: str | Path) -> Path:
    """The folder of the cat faces: ``root``, ``$CATDIFF_DATA_ROOT``, ``data_dir/catfaces64``,
    the folder an earlier download recorded, else a kagglehub download (recorded). Wrapper
    folders are descended into."""
    if root is not None and str(root) != "":
        folder = Path(root).expanduser()
        if not folder.is_dir():
            raise UserError(
                f"data.root={root}: folder not found; pass data.root=PATH to a folder of cat images"
            )
        return _image_folder(folder)
    env = os.environ.get(ENV_VAR)
    if env:
        folder = Path(env).expanduser()
        if not folder.is_dir():
            raise UserError(
                f"{ENV_VAR}={env}: folder not found; point it at a folder of cat images, "
                "unset it, or pass data.root=PATH"
            )
        return _image_folder(folder)
    data_dir = Path(data_dir).expanduser()
    local = data_dir / LOCAL_FOLDER
    if local.is_dir() and any(local.iterdir()):
        return _image_folder(local)
    record = data_dir / RECORD_FILE
    if record.is_file():
        recorded = Path(record.read_text().strip())
        if recorded.is_dir():
            return _image_folder(recorded)
    if not _has_network():
        raise UserError(NO_NETWORK)
    folder = _image_folder(_download())
    data_dir.mkdir(parents=True, exist_ok=True)
    record.write_text(f"{folder}\n")
    return folder
