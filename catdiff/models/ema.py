"""Exponential moving average of model weights, for sampling with smoother weights (DDPM used 0.9999)."""

import copy
from typing import Any

import torch
from torch import nn


class EMA(nn.Module):
    """``self.model``: a frozen copy (always in eval mode) whose weights track the live ones.

    After each optimiser step ``update(model)``: ``ema <- d * ema + (1 - d) * model``. With
    ``warmup``, ``d = min(decay, (1 + n) / (10 + n))`` after n updates (TensorFlow's
    ``num_updates``), so early averages are not dominated by the initialisation. As a
    submodule its weights and ``num_updates`` go into the owner's ``state_dict``.
    """

    num_updates: torch.Tensor

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True) -> None:
        super().__init__()
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
        self.decay = decay
        self.warmup = warmup
        self.model = copy.deepcopy(model)
        self.model.eval().requires_grad_(False)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
        # Host-side mirror of num_updates (no device sync per step); None: re-read once.
        self._num_updates: int | None = 0

    def train(self, mode: bool = True) -> "EMA":
        super().train(mode)
        self.model.eval()
        return self

    def _updates_so_far(self) -> int:
        if self._num_updates is None:
            self._num_updates = int(self.num_updates.item())
        return self._num_updates

    def effective_decay(self) -> float:
        """The decay the next ``update`` will use (for logging)."""
        if not self.warmup:
            return self.decay
        n = self._updates_so_far()
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the averaged weights towards ``model``'s; copy its buffers (e.g. running stats)."""
        d = self.effective_decay()
        ema_floats, live_floats, ema_rest, live_rest = [], [], [], []
        for ema_p, p in zip(self.model.parameters(), model.parameters(), strict=True):
            if ema_p.is_floating_point():
                ema_floats.append(ema_p)
                live_floats.append(p)
            else:
                ema_rest.append(ema_p)
                live_rest.append(p)
        for ema_b, b in zip(self.model.buffers(), model.buffers(), strict=True):
            ema_rest.append(ema_b)
            live_rest.append(b)
        if ema_floats:
            # ema + (1 - d) * (p - ema) = d * ema + (1 - d) * p, one fused call for all tensors.
            torch._foreach_lerp_(ema_floats, live_floats, 1.0 - d)
        if ema_rest:
            torch._foreach_copy_(ema_rest, live_rest)
        self.num_updates.add_(1)
        self._num_updates = self._updates_so_far() + 1

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._num_updates = None  # the loaded buffer is the truth now

    def extra_repr(self) -> str:
        return f"decay={self.decay}, warmup={self.warmup}"
