"""``auto`` settings: ``trainer.precision`` (bf16 autocast where the hardware runs it fast, else
fp32) and ``module.channels_last`` (on for fp32 training on CPU).

Pure torch rules about the hardware, shared by the config checks (catdiff.config), training
and sampling; no Lightning here (the values are Lightning's precision strings).
"""

from __future__ import annotations

import torch


def cpu_has_fast_bf16() -> bool:
    """AVX-512 BF16 or AMX tiles: the CPU runs bf16 matmuls and convolutions natively."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def bf16_is_native(device: torch.device) -> bool:
    """Whether ``device`` computes in bf16 natively (a CUDA GPU with bf16, or a CPU with
    AVX-512 BF16 / AMX); elsewhere bf16 is emulated and slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_fast_bf16()


def uses_gpu(accelerator: str) -> bool:
    """Whether Lightning's ``trainer.accelerator`` value trains on a CUDA GPU here."""
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def auto_precision(accelerator: str = "auto") -> str:
    """The Lightning precision for ``accelerator`` when the config says ``auto``.

    bf16 autocast with fp32 master weights (``bf16-mixed``) on GPUs that support bf16 and on
    CPUs with native bf16; ``32-true`` elsewhere. Without native bf16 the CPU emulates it and
    bf16 is slower than fp32; with it, half the bytes per activation and the faster bf16 kernels
    make the training step faster (by how much: the README's Speed section).
    """
    device = torch.device("cuda" if uses_gpu(accelerator) else "cpu")
    return "bf16-mixed" if bf16_is_native(device) else "32-true"


def auto_channels_last(accelerator: str, precision: str) -> bool:
    """``module.channels_last=auto`` for the resolved ``trainer.precision``: on for fp32 on CPU.

    oneDNN's fp32 3x3 convolutions are cheaper in channels_last than GroupNorm is dearer, so
    the fp32 step gains; the bf16 step loses, so it stays off with bf16. Untried on GPUs: off
    there. The bench runs behind this choice are in the README's Speed section
    ("channels_last is the fp32 default").
    """
    return not uses_gpu(accelerator) and str(precision) in ("32-true", "32")
