"""Element-wise regression losses between the network output and its target.

The seed trains with the L1 norm ||z - NN(x_t, t)||_1; L2 is the DDPM paper's simple loss
(Ho et al. 2020). Reduction is left to the caller (GaussianDiffusion.loss_per_sample averages
over C, H, W so that per-sample weights can be applied later).
"""

import torch
import torch.nn.functional as F

from catdiff.diffusion.named import resolve
from catdiff.errors import UserError

BUILTIN = {
    "l1": lambda pred, target, huber_delta: (pred - target).abs(),
    "l2": lambda pred, target, huber_delta: (pred - target).square(),
    "huber": lambda pred, target, huber_delta: F.huber_loss(
        pred, target, reduction="none", delta=huber_delta
    ),
}
LOSSES = tuple(BUILTIN)


def check_loss(name: str, huber_delta: float = 1.0) -> None:
    """Raise UserError unless ``name`` is a loss (built-in or importable) and ``huber_delta`` > 0."""
    resolve(name, BUILTIN, "diffusion.loss")
    if not huber_delta > 0:
        raise UserError(f"diffusion.huber_delta={huber_delta!r} must be > 0 (e.g. 1.0)")


def elementwise_loss(
    name: str, pred: torch.Tensor, target: torch.Tensor, huber_delta: float = 1.0
) -> torch.Tensor:
    """Loss of every element of ``pred`` against ``target`` (same shape), no reduction.

    ``name`` is one of ``LOSSES`` (config key ``diffusion.loss``): ``"l1"`` |pred - target| (the
    seed); ``"l2"`` (pred - target)^2 (Ho et al. 2020); ``"huber"`` 0.5 d^2 for |d| <=
    huber_delta, else huber_delta (|d| - 0.5 huber_delta) (Huber 1964; robust to the rare large
    errors at small t). Or the import path of a function ``f(pred, target, huber_delta)`` with
    the same contract (:mod:`catdiff.diffusion.named`): a new loss is its own module.
    """
    loss = resolve(name, BUILTIN, "diffusion.loss")
    if not huber_delta > 0:
        raise UserError(f"diffusion.huber_delta={huber_delta!r} must be > 0 (e.g. 1.0)")
    out = loss(pred, target, huber_delta)
    if out.shape != pred.shape:
        raise UserError(
            f"diffusion.loss={name} must keep the shape {tuple(pred.shape)}, not {tuple(out.shape)}"
        )
    return out
