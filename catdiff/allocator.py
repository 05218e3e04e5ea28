"""Keep freed tensor memory in the process instead of handing it back to the OS (glibc malloc).

glibc serves a large allocation with its own ``mmap`` and returns it with ``munmap`` when it is
freed; below that size it trims the heap whenever more than a threshold is free at its top.
A training step frees and re-allocates the same activations every step (tens of MB each for the
default UNet at batch 128), so with glibc's defaults the kernel hands back fresh pages and
zero-fills them again on every step: tens of thousands of page faults per step, each one
kernel time the step waits for. Raising both thresholds keeps that memory in the heap, where
the next step re-uses it; the peak memory of the process does not change, since the same
activations are live at the same time either way.

The gain is a property of the process, not of catdiff's model (diffusers' training step gains
more from the same settings), which is why ``make bench`` times the comparisons with each
tool in a process of its own. The page-fault counts and step times are in the README's Speed
section ("Freed memory stays in the process"). Settings of the user's own (the ``MALLOC_*_``
variables or ``GLIBC_TUNABLES`` with ``glibc.malloc``) are kept.
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
    """Set glibc's mmap and trim thresholds (once per process); returns what was done.

    ``"set"`` (now or earlier in this process), ``"user"`` (the environment's settings are
    kept) or ``"unavailable"`` (not glibc). Call it early: memory already handed to ``mmap``
    is not affected until it is freed.
    """
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
