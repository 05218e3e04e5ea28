"""Element-wise regression losses between the network output and its target.

The seed trains with the L1 norm ||z - NN(x_t, t)||_1; L2 is the DDPM paper's simple loss
(Ho et al. 2020). Reduction is left to the caller (GaussianDiffusion.loss_per_sample averages
over C, H, W so that per-sample weights can be applied later).
"""

import torch
import torch.nn.functional as F

from catdiff.errors import UserError, check_choice

LOSSES = ("l1", "l2", "huber")


def check_loss(name: str, huber_delta: float = 1.0) -> None:
    """Raise UserError unless ``name`` is in LOSSES and ``huber_delta`` > 0."""
    check_choice("diffusion.loss", name, LOSSES)
    if not huber_delta > 0:
        raise UserError(f"diffusion.huber_delta={huber_delta!r} must be > 0 (e.g. 1.0)")


def elementwise_loss(
    name: str, pred: torch.Tensor, target: torch.Tensor, huber_delta: float = 1.0
) -> torch.Tensor:
    """Loss of every element of ``pred`` against ``target`` (same shape), no reduction.

    ``name`` is one of ``LOSSES`` (config key ``diffusion.loss``): ``"l1"`` |pred - target| (the
    seed); ``"l2"`` (pred - target)^2 (Ho et al. 2020); ``"huber"`` 0.5 d^2 for |d| <=
    huber_delta, else huber_delta (|d| - 0.5 huber_delta) (Huber 1964; robust to the rare large
    errors at small t).
    """
    check_loss(name, huber_delta)
    if name == "l1":
        return (pred - target).abs()
    if name == "l2":
        return (pred - target).square()
    return F.huber_loss(pred, target, reduction="none", delta=huber_delta)
