"""``auto`` settings: ``trainer.precision`` (bf16 autocast where the hardware runs it fast, else
fp32) and ``module.channels_last`` (on for fp32 training on CPU)."""

from __future__ import annotations

import torch


def cpu_has_fast_bf16() -> bool:
    """AVX-512 BF16 or AMX tiles: bf16 matmuls/convs run natively (2-3x fp32 here)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def uses_gpu(accelerator: str) -> bool:
    """Whether Lightning's ``trainer.accelerator`` value trains on a CUDA GPU here."""
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def auto_precision(accelerator: str = "auto") -> str:
    """The Lightning precision for ``accelerator`` when the config says ``auto``.

    bf16 autocast with fp32 master weights (``bf16-mixed``) on GPUs that support bf16 and on
    CPUs with native bf16; ``32-true`` elsewhere. bf16-mixed trains the default UNet 1.45-1.6x as
    fast as fp32 in ``make bench`` on this project's 2-core CPUs (AMD EPYC: 1.45x and 1.61x,
    experiments/bench/2026-11-29-0635-cpu.md and -0715-cpu.md; Intel Xeon with AMX: 1.51x,
    experiments/bench/2026-11-28-cpu.md).
    """
    if uses_gpu(accelerator):
        return (
            "bf16-mixed"
            if torch.cuda.is_available() and torch.cuda.is_bf16_supported()
            else "32-true"
        )
    return "bf16-mixed" if cpu_has_fast_bf16() else "32-true"


def auto_channels_last(accelerator: str, precision: str) -> bool:
    """``module.channels_last=auto`` for the resolved ``trainer.precision``: on for fp32 on CPU.

    Measured by ``make bench`` on this project's two 2-core CPUs (an Intel Xeon with AMX, an AMD
    EPYC without; default UNet, batch 128, each pair timed interleaved): channels_last made the
    fp32 training step 1.01-1.21x faster in five runs (oneDNN's 3x3 convolutions gain more than
    GroupNorm loses), and the bf16 step 0.81-0.87x as fast, so it stays off with bf16. GPUs
    were not measured: off there.
    """
    return not uses_gpu(accelerator) and str(precision) in ("32-true", "32")
