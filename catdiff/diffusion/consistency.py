"""Few-step generation by Easy Consistency Tuning (ECT; Geng et al. 2024, "Consistency Models
Made Easy"), started from a trained catdiff diffusion model, and its multistep sampler.

A consistency function maps every point of one probability-flow ODE trajectory to the
trajectory's end, the image: f(x_t, t) = x0 for all t, so one evaluation at pure noise is a
sample. In EDM's coordinates (x_t / a_t = x0 + sigma_t eps, sigma_t = s_t / a_t; see
:mod:`catdiff.diffusion.heun`) a point and a less noisy one drawn with the same eps,

    x_t = a_t (x0 + sigma_t eps),   x_r = a_r (x0 + sigma_r eps),   sigma_r < sigma_t,

lie on one trajectory up to O((sigma_t - sigma_r)^2), so consistency training asks
f(x_t, t) = stopgrad f(x_r, r). ECT's two observations make this cheap:

- With sigma_r = 0 the target is x0 itself and the loss is diffusion's denoising loss: a
  trained diffusion model (whose x0 prediction is f) is a consistency model at its first
  stage. Tuning starts from it, not from scratch.
- Shrink the gap stage by stage, r = t (1 - n(sigma_t) / q^stage) in sigma with n(sigma) =
  1 + k sigmoid(-b sigma) (q = 2, k = 8, b = 1): each stage halves it, moving from
  denoising towards the exact consistency condition.

The loss of one sample (ECT's, iCT's pseudo-Huber metric; Song & Dhariwal 2023) is

    w(t, r) (sqrt(||f(x_t) - stopgrad f(x_r)||^2 + c^2) - c),   w = 1 / (sigma_t - sigma_r)

with c = 0.00054 sqrt(dim) and t drawn with log sigma_t ~ N(p_mean, p_std^2) (ECT: -1.1, 2).
f is the network's x0 through the diffusion's objective (any of eps, x0, v, flow): as
sigma -> 0 it tends to x itself, the boundary condition f(x, 0) = x. catdiff's timesteps are
discrete, so every sigma_r is moved to the nearest timestep below t (or to the image itself).

Sampling (Song et al. 2023, Algorithm 1) with N evaluations: x0 = f(x_{T-1}); then N - 1
times, add noise back to a lower level sigma_i (x = a_i (x0 + sigma_i z)) and map it again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from catdiff.diffusion.gaussian import GaussianDiffusion
from catdiff.diffusion.heun import edm_sigmas, nearest_t
from catdiff.diffusion.samplers import Model, SampleResult, _noise_like, _record_plan
from catdiff.diffusion.timesteps import t_probabilities
from catdiff.errors import UserError


def timestep_below(sigmas: torch.Tensor, sigma: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """For each sample the timestep whose sigma is nearest ``sigma`` in log, at most t - 1;
    -1 (the image, sigma = 0) where ``sigma`` lies below half of sigma_0. All on one device."""
    log_sigma = sigma.clamp(min=1e-30).log()
    nearest = (sigmas.log()[None, :] - log_sigma[:, None]).abs().argmin(dim=1)
    nearest = torch.minimum(nearest, t - 1)
    return torch.where(sigma < sigmas[0] / 2, torch.full_like(nearest, -1), nearest)


class ConsistencyTuning:
    """ECT's training loss on ``diffusion``'s process (module docstring).

    Args:
        stages: how many times the gap halves over the run (``module.consistency.stages``);
            stage s of the run's steps uses r = t (1 - n(sigma_t) / q^s).
        q, k, b: the gap's schedule (ECT: q = 2, k = 8, b = 1).
        p_mean, p_std: log sigma_t ~ N(p_mean, p_std^2) (ECT: -1.1, 2.0).
        huber_c: the pseudo-Huber constant per sqrt(dim) (iCT: 0.00054).
    """

    def __init__(
        self,
        stages: int = 6,
        q: float = 2.0,
        k: float = 8.0,
        b: float = 1.0,
        p_mean: float = -1.1,
        p_std: float = 2.0,
        huber_c: float = 0.00054,
    ) -> None:
        if not isinstance(stages, int) or isinstance(stages, bool) or stages < 1:
            raise UserError(f"module.consistency.stages={stages!r} must be an integer >= 1")
        for key, value in (("q", q), ("p_std", p_std), ("huber_c", huber_c)):
            if not value > 0:
                raise UserError(f"module.consistency.{key}={value!r} must be > 0")
        if q <= 1:
            raise UserError(f"module.consistency.q={q!r} must be > 1 (the gap shrinks by q)")
        self.stages, self.q, self.k, self.b = stages, float(q), float(k), float(b)
        self.p_mean, self.p_std, self.huber_c = float(p_mean), float(p_std), float(huber_c)
        self._tables: tuple | None = None  # (diffusion, device, sigmas, p(t)): see _sigmas_probs

    def __repr__(self) -> str:
        return (
            f"ConsistencyTuning(stages={self.stages}, q={self.q}, p=({self.p_mean}, {self.p_std}))"
        )

    def stage(self, step: int, total_steps: int) -> int:
        """The stage of training step ``step`` of ``total_steps``: 0 .. stages - 1."""
        return min(self.stages - 1, step * self.stages // max(total_steps, 1))

    def _sigmas_probs(
        self, diffusion: GaussianDiffusion, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(sigma_t, p(t)) on ``device``, computed once per diffusion and device, not per step."""
        cached = self._tables
        if cached is None or cached[0] is not diffusion or cached[1] != device:
            probs = t_probabilities(diffusion.alpha_bar, "lognormal", self.p_mean, self.p_std)
            probs[0] = 0.0  # t = 0 has no lower timestep but the image; allowed from t = 1 up
            sigmas = edm_sigmas(diffusion)
            cached = self._tables = (diffusion, device, sigmas.to(device), probs.float().to(device))
        return cached[2], cached[3]

    def pairs(
        self,
        diffusion: GaussianDiffusion,
        n: int,
        stage: int,
        device: torch.device | str,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Timesteps (t, r) for n samples on ``device``, r < t, r = -1 for the image itself;
        drawn on the generator's device."""
        where = torch.device(generator.device if generator is not None else device)
        sigmas, probs = self._sigmas_probs(diffusion, where)
        t = torch.multinomial(probs, n, replacement=True, generator=generator)
        sigma_t = sigmas[t]
        shrink = (1 + self.k * torch.sigmoid(-self.b * sigma_t)) / self.q**stage
        r = timestep_below(sigmas, sigma_t * (1 - shrink).clamp(min=0), t)
        return t.to(device), r.to(device)

    def loss_per_sample(
        self,
        net: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        diffusion: GaussianDiffusion,
        x0: torch.Tensor,
        stage: int,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """ECT's loss for clean images x0 (B, C, H, W) at ``stage``: shape (B,)."""
        t, r = self.pairs(diffusion, x0.shape[0], stage, x0.device, generator)
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x_t = diffusion.q_sample(x0, t, noise)
        f_t = diffusion.model_to_x0_eps(net(x_t, t).float(), x_t, t)[0]
        r0 = r.clamp(min=0)
        if stage == 0:  # n(sigma) >= 1 = q^0: every r is the image, no forward needed
            f_r = x0.float()
        else:
            with torch.no_grad():
                x_r = diffusion.q_sample(x0, r0, noise)
                f_r = diffusion.model_to_x0_eps(net(x_r, r0).float(), x_r, r0)[0]
                image = (r < 0).view(-1, *([1] * (x0.ndim - 1)))
                f_r = torch.where(image, x0.float(), f_r)
        sigmas = self._sigmas_probs(diffusion, x0.device)[0]
        sigma_r = torch.where(r < 0, torch.zeros_like(sigmas[t]), sigmas[r0])
        weight = (1 / (sigmas[t] - sigma_r)).float()
        c = self.huber_c * math.sqrt(x0[0].numel())
        distance = (f_t - f_r).flatten(1).square().sum(dim=1)
        return weight * ((distance + c**2).sqrt() - c)


class ConsistencySampler:
    """Multistep consistency sampling: ``steps`` network evaluations (1, 2, 4, ...).

    Args:
        steps: network evaluations (``sampler.steps``).
        sigma_hi, sigma_lo: the steps - 1 noise levels the image is re-noised to are spaced
            evenly in log sigma from sigma_hi down to sigma_lo (one level: sigma_hi; iCT's
            2-step choice is 0.821 in EDM's sigma).
        clip_x0: clip each image estimate to [-1, 1].
    """

    name = "consistency"

    def __init__(
        self, steps: int = 2, sigma_hi: float = 0.821, sigma_lo: float = 0.1, clip_x0: bool = True
    ) -> None:
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise UserError(f"sampler.steps={steps!r} must be a positive integer (1, 2, 4)")
        if not 0 < sigma_lo <= sigma_hi:
            raise UserError(
                f"sampler.sigma_lo={sigma_lo!r}, sampler.sigma_hi={sigma_hi!r}: "
                "need 0 < sigma_lo <= sigma_hi"
            )
        self.steps, self.sigma_hi, self.sigma_lo = steps, float(sigma_hi), float(sigma_lo)
        self.clip_x0 = clip_x0

    def __repr__(self) -> str:
        return (
            f"ConsistencySampler(steps={self.steps}, sigma_hi={self.sigma_hi}, "
            f"sigma_lo={self.sigma_lo}, clip_x0={self.clip_x0})"
        )

    def timesteps(self, diffusion: GaussianDiffusion) -> list[int]:
        """T-1, then the timesteps nearest the re-noising levels (each below the last)."""
        if self.steps > diffusion.T:
            raise UserError(f"sampler.steps={self.steps} must be at most diffusion.T={diffusion.T}")
        sigmas = edm_sigmas(diffusion)
        levels = torch.logspace(
            math.log10(self.sigma_hi),
            math.log10(self.sigma_lo),
            self.steps - 1,
            dtype=torch.float64,
        )
        chosen = [diffusion.T - 1]
        log_sigmas = sigmas.log()
        for sigma in levels.tolist():
            t = nearest_t(log_sigmas, sigma)
            if t < chosen[-1]:
                chosen.append(t)
        return chosen

    def nfe(self, diffusion: GaussianDiffusion) -> int:
        """Network evaluations per sample: one per visited timestep."""
        return len(self.timesteps(diffusion))

    def __call__(
        self,
        model: Model,
        diffusion: GaussianDiffusion,
        x_T: torch.Tensor,
        generator: torch.Generator | None = None,
        record: Iterable[int] = (),
        progress: bool = False,
    ) -> SampleResult:
        """Map x_T (B, C, H, W) to images; ``record`` keeps x_t at the visited timesteps."""
        timesteps = self.timesteps(diffusion)
        plan = _record_plan(record, timesteps + [-1], diffusion.T)
        trajectory: dict[int, torch.Tensor] = {}
        x = x0 = x_T
        with torch.inference_mode():
            for i, t in enumerate(timesteps):
                if i > 0:  # re-noise the estimate to timestep t: x_t = a x0 + s z
                    a = diffusion.sqrt_alpha_bar[t].to(x.dtype)
                    s = diffusion.sqrt_one_minus_alpha_bar[t].to(x.dtype)
                    x = a * x0 + s * _noise_like(x0, generator)
                for r in plan.get(i, ()):
                    trajectory[r] = x.detach().to("cpu", copy=True)
                t_batch = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
                x0, _ = diffusion.model_to_x0_eps(model(x, t_batch), x, t_batch)
                if self.clip_x0:
                    x0 = x0.clamp(-1.0, 1.0)
            for r in plan.get(len(timesteps), ()):
                trajectory[r] = x0.detach().to("cpu", copy=True)
        return SampleResult(x0=x0, trajectory=trajectory)
