"""The files a later command reads: written atomically, read without running code.

**Writing.** To a temporary file *in the folder of its final name*, fsynced, renamed over the
final name with ``os.replace``, then the folder fsynced. A rename inside one filesystem is
atomic (a reader sees the previous or the new complete file); a temporary file elsewhere
would make the last step a copy that a kill can leave truncated. A failed write leaves no
partial file under the final name, and a full disk or refused folder is one UserError line.

**Reading.** A pickle can run code: :func:`load_tensors` passes ``weights_only=True``
explicitly, which wins over ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` (it only replaces the default).
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from catdiff.errors import UserError

_NO_ROOM = {errno.ENOSPC, errno.EDQUOT} if hasattr(errno, "EDQUOT") else {errno.ENOSPC}


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it: done once, at import, before
    os.umask(mask)  # any other thread (W&B's writer, loaders) could create a file meanwhile
    return mask


_UMASK = _read_umask()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not every platform opens folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def describe_write_error(path: Path, error: OSError) -> str:
    """One line for a failed write of ``path``: full disk, refused folder, or the OS's words."""
    if error.errno in _NO_ROOM:
        return f"no space left on the device writing {path} (the previous file, if any, is kept)"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write {path}: {error.strerror} (choose a writable folder)"
    if error.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        return f"cannot write {path}: a path component is a file, or the name is a folder"
    return f"cannot write {path}: {error.strerror or error}"


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", durable: bool = True) -> Iterator[IO[Any]]:
    """``with atomic_open(path) as f: f.write(...)``: ``path`` appears complete or not at all.
    ``durable=False`` skips the fsyncs (whole-or-nothing if the process dies, not after a
    power cut)."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'wb' or 'w', not {mode!r}")
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a folder", str(path))
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide the file from a group
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        if durable:
            _fsync_dir(path.parent)
    except OSError as e:
        raise UserError(describe_write_error(path, e)) from e
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def writable_folder(folder: str | Path, key: str) -> Path:
    """``folder`` created if needed and proven writable (a probe file) before any work."""
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise UserError(f"{key}={path} is a file, not a folder: choose another {key}")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"{key}: {describe_write_error(path, e)}") from None
    return path


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w") as f:
        f.write(text)


def save_torch(obj: Any, path: str | Path) -> None:
    """``torch.save(obj, path)``, atomically."""
    import torch

    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def write_with(path: str | Path, writer: Callable[[IO[bytes]], None], durable: bool = True) -> None:
    """Call ``writer(binary file)`` and publish what it wrote under ``path`` atomically."""
    with atomic_open(path, "wb", durable=durable) as f:
        writer(f)


def load_tensors(path: str | Path, *, mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU: tensors and plain containers only."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def load_user_file(path: str | Path, key: str, what: str, *, mmap: bool = False) -> Any:
    """:func:`load_tensors` for a file named with ``key=``: any failure to read it is one
    UserError line naming ``key``, not a traceback."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"{key}={path} does not exist" + (" (it is a folder)" if path.is_dir() else "")
        )
    try:
        return load_tensors(path, mmap=mmap)
    except Exception as error:  # noqa: BLE001 - any failure to read is "not a <what>"
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        first = first if len(first) <= 120 else first[:117] + "..."
        raise UserError(f"{key}={path} is not a {what} ({type(error).__name__}: {first})") from None
