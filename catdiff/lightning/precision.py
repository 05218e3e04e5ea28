"""Moved to :mod:`catdiff.precision` (pure torch, so the config checks can use it without
importing the Lightning layer). This name stays for old imports; patch the functions there."""

from catdiff.precision import auto_channels_last, auto_precision, cpu_has_fast_bf16, uses_gpu

__all__ = ["auto_channels_last", "auto_precision", "cpu_has_fast_bf16", "uses_gpu"]
