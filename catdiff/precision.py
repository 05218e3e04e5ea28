"""``auto`` settings: ``trainer.precision`` (bf16 autocast where the hardware runs it fast, else
fp32) and ``module.channels_last`` (on for fp32 training on CPU). Pure torch, no Lightning."""

from __future__ import annotations

import torch


def cpu_has_fast_bf16() -> bool:
    """AVX-512 BF16 or AMX tiles: the CPU runs bf16 matmuls and convolutions natively."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def bf16_is_native(device: torch.device) -> bool:
    """Whether ``device`` computes in bf16 natively (elsewhere it is emulated, slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_fast_bf16()


def uses_gpu(accelerator: str) -> bool:
    """Whether Lightning's ``trainer.accelerator`` value trains on a CUDA GPU here."""
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def auto_precision(accelerator: str = "auto") -> str:
    """``bf16-mixed`` where bf16 is native (:func:`bf16_is_native`), else ``32-true``."""
    device = torch.device("cuda" if uses_gpu(accelerator) else "cpu")
    return "bf16-mixed" if bf16_is_native(device) else "32-true"


def auto_channels_last(accelerator: str, precision: str) -> bool:
    """``module.channels_last=auto``: on for fp32 on CPU (oneDNN's fp32 convolutions gain more
    than GroupNorm loses; the bf16 step loses), off with bf16 and on GPUs (untried)."""
    return not uses_gpu(accelerator) and str(precision) in ("32-true", "32")
