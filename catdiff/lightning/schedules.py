"""Learning-rate schedules, built from config as partials: ``fn(optimizer, total_steps)``."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_steps: int = 200,
    min_lr_ratio: float = 0.1,
) -> LambdaLR:
    """Linear warm-up from 0 over ``warmup_steps``, then cosine decay to ``min_lr_ratio * lr``.

    Warm-up keeps Adam's first, badly estimated second moments from taking huge steps
    (Goyal et al. 2017); the cosine tail (Loshchilov & Hutter 2017) lets the last steps settle.
    """

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)
