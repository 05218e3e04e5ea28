"""What the network predicts (``diffusion.objective``): its training target for a noised image,
and how its output is read back as the pair (x0, eps) every sampler and the NLL bound work with.

A point of the forward process is x_t = a x0 + s eps, with a = sqrt(alpha_bar_t) and
s = sqrt(1 - alpha_bar_t). Any one of these targets determines x0 and eps given x_t:

    eps   the noise (Ho et al. 2020, the seed)          x0 = (x_t - s eps) / a
    x0    the clean image                               eps = (x_t - a x0) / s
    v     a eps - s x0 (Salimans & Ho 2022)             x0 = a x_t - s v,   eps = s x_t + a v
    flow  eps - x0, the rectified-flow velocity         x0 = (x_t - s u) / (a + s)
          (Liu et al. 2023; Lipman et al. 2023)         eps = (x_t + a u) / (a + s)

Why flow is a velocity: x_t / (a + s) = (1 - r) x0 + r eps with r = s / (a + s), so every
Gaussian path is the straight line of rectified flow from the image (r = 0) to the noise
(r = 1) up to the input scale 1 / (a + s); along it d/dr of the point is eps - x0. The schedule
decides which r the timesteps visit (``rectified_flow`` visits them evenly). The network sees
x_t (unit variance at every t, EDM's c_in), the loss sees the velocity. eps and x0 targets
need a division by a or s, which vanishes at one end of the schedule; v and flow never do.

Min-SNR weighting (:func:`catdiff.diffusion.gaussian.min_snr_weight`) is stated in x0 terms,
so each objective also says how large an error of its target is per unit error of x0, squared:
``x0_error_scale(snr)``: eps SNR, x0 1, v SNR + 1, flow (sqrt(SNR) + 1)^2.

A new objective is one class in its own module, named by import path
(``diffusion.objective=mylab.objectives.Score``): it has the three methods below with these
signatures (tensors (B, C, H, W); a and s broadcast against them).
"""

from __future__ import annotations

from typing import Protocol

import torch

from catdiff.diffusion.named import resolve
from catdiff.errors import UserError

Tensor = torch.Tensor


class Objective(Protocol):
    """What ``GaussianDiffusion`` asks of an objective."""

    def target(self, x0: Tensor, eps: Tensor, a: Tensor, s: Tensor) -> Tensor: ...

    def to_x0_eps(
        self, out: Tensor, x_t: Tensor, a: Tensor, s: Tensor
    ) -> tuple[Tensor, Tensor]: ...

    def x0_error_scale(self, snr: Tensor) -> Tensor: ...


class Eps:
    """Predict the noise eps (the seed)."""

    def target(self, x0, eps, a, s):
        return eps

    def to_x0_eps(self, out, x_t, a, s):
        return (x_t - s * out) / a, out

    def x0_error_scale(self, snr):
        return snr


class X0:
    """Predict the clean image x0."""

    def target(self, x0, eps, a, s):
        return x0

    def to_x0_eps(self, out, x_t, a, s):
        return out, (x_t - a * out) / s

    def x0_error_scale(self, snr):
        return torch.ones_like(snr)


class V:
    """Predict v = a eps - s x0 (Salimans & Ho 2022)."""

    def target(self, x0, eps, a, s):
        return a * eps - s * x0

    def to_x0_eps(self, out, x_t, a, s):
        return a * x_t - s * out, s * x_t + a * out

    def x0_error_scale(self, snr):
        return snr + 1


class Flow:
    """Predict the rectified-flow velocity u = eps - x0 (see the module docstring)."""

    def target(self, x0, eps, a, s):
        return eps - x0

    def to_x0_eps(self, out, x_t, a, s):
        return (x_t - s * out) / (a + s), (x_t + a * out) / (a + s)

    def x0_error_scale(self, snr):
        return (snr.sqrt() + 1).square()


BUILTIN = {"eps": Eps, "x0": X0, "v": V, "flow": Flow}
OBJECTIVES = tuple(BUILTIN)
_METHODS = ("target", "to_x0_eps", "x0_error_scale")


def make_objective(name: str) -> Objective:
    """The objective named ``name`` (one of OBJECTIVES, or a class's import path), built."""
    found = resolve(name, BUILTIN, "diffusion.objective")
    try:
        objective = found() if isinstance(found, type) else found
    except Exception as e:  # a plug-in's constructor: its failure is the user's config
        raise UserError(
            f"diffusion.objective={name}: cannot build it ({type(e).__name__}: {e})"
        ) from None
    missing = [m for m in _METHODS if not callable(getattr(objective, m, None))]
    if missing:
        raise UserError(f"diffusion.objective={name} lacks {', '.join(missing)} (see {__name__})")
    return objective
