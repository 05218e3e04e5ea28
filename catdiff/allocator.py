"""Keep freed tensor memory in the process instead of handing it back to the OS (glibc malloc).

glibc returns a large allocation to the kernel with ``munmap`` when it is freed, and trims the
heap above a threshold. Every step frees and re-allocates the same activations, so the kernel
zero-fills fresh pages every step (page faults the step waits for). Raising both thresholds
keeps that memory in the heap for the next step; the peak memory does not change. Settings of
the user's own (``MALLOC_*_``, ``GLIBC_TUNABLES`` with ``glibc.malloc``) are kept.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
# Allocations below 1 GiB come from the heap, and up to ~2 GiB free at its top stays there
# (mallopt takes an int: 2**31 - 1 is the largest trim threshold it can be given).
MMAP_THRESHOLD = 1 << 30
TRIM_THRESHOLD = (1 << 31) - 1
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")

_state: str | None = None  # what keep_freed_memory() did in this process


def user_has_settings(environ: dict[str, str] | os._Environ = os.environ) -> bool:
    """True if the environment already tunes glibc's malloc thresholds."""
    tunables = environ.get("GLIBC_TUNABLES", "")
    return any(k in environ for k in USER_SETTINGS) or "glibc.malloc." in tunables


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018  glibc only (musl's mallopt does nothing)
        return libc
    except (OSError, AttributeError):
        return None


def keep_freed_memory() -> str:
    """Set glibc's mmap and trim thresholds once per process: ``"set"``, ``"user"`` (the
    environment's settings kept) or ``"unavailable"`` (not glibc)."""
    global _state
    if _state is None:
        if user_has_settings():
            _state = "user"
        elif (libc := _glibc()) is None:
            _state = "unavailable"
        else:
            ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            ok = libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
            _state = "set" if ok else "unavailable"
    return _state


def describe() -> str:
    """One line for reports: the allocator settings this process runs with."""
    state = _state or "default"
    if state == "set":
        return (
            f"glibc malloc, mmap_threshold={MMAP_THRESHOLD >> 20} MiB and trim_threshold="
            f"{TRIM_THRESHOLD >> 20} MiB (catdiff.allocator, as catdiff.train, sample and evaluate set it)"
        )
    if state == "user":
        settings = {k: os.environ[k] for k in (*USER_SETTINGS, "GLIBC_TUNABLES") if k in os.environ}
        return f"the environment's malloc settings ({settings})"
    return "the C library's default malloc settings"
