"""``trainer.precision=auto``: bf16 autocast where the hardware runs it fast, else fp32."""

from __future__ import annotations

import torch


def cpu_has_fast_bf16() -> bool:
    """AVX-512 BF16 or AMX tiles: bf16 matmuls/convs run natively (2-3x fp32 here)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def auto_precision(accelerator: str = "auto") -> str:
    """The Lightning precision for ``accelerator`` when the config says ``auto``.

    bf16 autocast with fp32 master weights (``bf16-mixed``) on GPUs that support bf16 and on
    CPUs with native bf16; ``32-true`` elsewhere. On this project's 2-core CPU bf16-mixed
    trains the default UNet 1.7x faster (experiments/bench/2026-11-28-cpu.md).
    """
    use_gpu = accelerator in ("gpu", "cuda") or (
        accelerator == "auto" and torch.cuda.is_available()
    )
    if use_gpu:
        return (
            "bf16-mixed"
            if torch.cuda.is_available() and torch.cuda.is_bf16_supported()
            else "32-true"
        )
    return "bf16-mixed" if cpu_has_fast_bf16() else "32-true"
