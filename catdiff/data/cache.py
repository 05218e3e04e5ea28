"""Decode once: the distinct decoded images of a source, cached on disk (``data.cache_dir``).

A warm start only lists and stats the files, compares a key, and loads one tensor file.

* **Key**: SHA-256 over a format version, every decoding parameter and each file's relative
  path, size and mtime_ns: any change rebuilds the cache.
* **Slot**: one file per (source, absolute root, parameters), ``<cache_dir>/<source>-<16
  hex>.pt``: 28 and 64 px keep one each; a changed file list overwrites its slot.
* **Checked on load**: format, key, shapes, dtypes and a CRC-32 of the pixels; anything else
  is rebuilt with a warning. Written atomically; stale ``.*.tmp`` files go after an hour.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from catdiff.data.decode import LoadedImages, LoadReport
from catdiff.errors import UserError
from catdiff.files import load_tensors, save_torch

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_STALE_TMP_SECONDS = 3600.0
_REPORT_FIELDS = ("files_seen", "decoded", "duplicates_dropped", "unreadable")


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


def fingerprint(params: dict, files: Iterable[tuple[str, int, int]]) -> str:
    """The cache key over ``params`` and every ``(relative path, size, mtime_ns)``, in order."""
    h = hashlib.sha256(_json({"format": FORMAT_VERSION, "params": params}).encode())
    for rel, size, mtime_ns in files:
        h.update(f"{rel}\0{size}\0{mtime_ns}\n".encode())
    return h.hexdigest()


def slot_path(cache_dir: str | Path, source: str, slot_params: dict) -> Path:
    """``<cache_dir>/<source>-<first 16 hex of SHA-256(slot_params)>.pt``."""
    digest = hashlib.sha256(_json({"source": source, **slot_params}).encode()).hexdigest()
    return Path(cache_dir).expanduser() / f"{source}-{digest[:16]}.pt"


def _crc(images: torch.Tensor, keys: torch.Tensor) -> int:
    crc = zlib.crc32(images.contiguous().numpy().data)
    return zlib.crc32(keys.contiguous().numpy().data, crc)


def _payload(key: str, loaded: LoadedImages) -> dict:
    digests = b"".join(bytes.fromhex(k) for k in loaded.keys)
    keys = torch.from_numpy(np.frombuffer(digests, dtype=np.uint8).reshape(-1, 20).copy())
    images = loaded.images.contiguous()
    return {
        "format": FORMAT_VERSION,
        "key": key,
        "images": images,
        "keys": keys,
        "fixed_test": loaded.fixed_test,
        "report": loaded.report.counts(),
        "crc32": _crc(images, keys),
    }


def _from_payload(payload: object, key: str) -> LoadedImages | None | str:
    """The cached images, ``None`` if the key differs (stale), or a string saying what is wrong."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        return "not a catdiff decode cache of this version"
    if payload.get("key") != key:
        return None
    images, keys, fixed_test = payload.get("images"), payload.get("keys"), payload.get("fixed_test")
    report = payload.get("report")
    if not (
        torch.is_tensor(images)
        and images.dtype == torch.uint8
        and images.ndim == 4
        and torch.is_tensor(keys)
        and keys.dtype == torch.uint8
        and keys.shape == (images.shape[0], 20)
        and (
            fixed_test is None
            or (torch.is_tensor(fixed_test) and fixed_test.shape == (images.shape[0],))
        )
        and isinstance(report, dict)
        and all(isinstance(report.get(k), int) for k in _REPORT_FIELDS)
    ):
        return "unexpected contents"
    if payload.get("crc32") != _crc(images, keys):
        return "checksum mismatch"
    counts = {k: v for k, v in report.items() if k in LoadReport.__dataclass_fields__}
    return LoadedImages(
        images=images,
        keys=[bytes(row).hex() for row in keys.numpy()],
        report=LoadReport(**counts),
        fixed_test=fixed_test,
    )


def load(path: str | Path, key: str) -> LoadedImages | None:
    """The cached images at ``path`` if it holds ``key``; ``None`` if absent, stale or corrupt."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        payload = load_tensors(path)
    except Exception as error:  # truncated zip, garbage, unpickling refusals: all "corrupt"
        result: LoadedImages | None | str = f"{type(error).__name__}: {str(error)[:80]}"
    else:
        result = _from_payload(payload, key)
    if isinstance(result, str):
        log.warning("decode cache %s is unreadable (%s); rebuilding it", path, result)
        return None
    if result is None:
        log.info("decode cache %s is out of date (files or options changed); rebuilding it", path)
    return result


def _remove_stale_temporaries(path: Path) -> None:
    now = time.time()
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            if now - tmp.stat().st_mtime > _STALE_TMP_SECONDS:
                tmp.unlink()
        except OSError:
            pass


def save(path: str | Path, key: str, loaded: LoadedImages) -> bool:
    """Write atomically; ``False`` with a warning when that fails (training goes on)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(path)
        save_torch(_payload(key, loaded), path)
    except (OSError, UserError) as error:
        log.warning(
            "could not write the decode cache %s (%s); continuing without it "
            "(set data.cache_dir=PATH, or null to turn the cache off)",
            path,
            error,
        )
        return False
    return True


def cached(
    cache_dir: str | Path | None,
    source: str,
    slot_params: dict,
    key: str,
    build: Callable[[], LoadedImages],
) -> LoadedImages:
    """``build()``'s result, from the cache when it holds ``key``; ``report.cache`` says which."""
    if cache_dir is None or str(cache_dir) == "":
        loaded = build()
        loaded.report.cache = "off"
        return loaded
    path = slot_path(cache_dir, source, slot_params)
    hit = load(path, key)
    if hit is not None:
        hit.report.cache = f"loaded {path}"
        return hit
    loaded = build()
    loaded.report.cache = f"built {path}" if save(path, key, loaded) else "built (not written)"
    return loaded
