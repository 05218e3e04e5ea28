"""EDM's 2nd-order Heun sampler (Karras et al. 2022, "Elucidating the Design Space of
Diffusion-Based Generative Models", Algorithm 2), on catdiff's discrete-time models.

EDM writes the forward process as x = x0 + sigma eps with the noise-to-signal ratio

    sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t),   x_edm = x_t / sqrt(alpha_bar_t),

so x_t = x_edm / sqrt(1 + sigma_t^2), and the probability-flow ODE becomes

    dx/dsigma = (x - D(x; sigma)) / sigma,   D(x; sigma) = E[x0 | x] (the network's x0).

Algorithm 2 visits N noise levels sigma_0 > ... > sigma_{N-1} > sigma_N = 0, spaced evenly in
sigma^(1/rho) (rho = 7: small steps near the image, where detail forms):

    sigma_i = (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho

and takes a Heun step (Euler, then the trapezoidal correction) between each pair; the last
step, to sigma = 0, is Euler (the correction would divide by sigma = 0), so one sample costs
2N - 1 network evaluations. Optional churn (S_churn > 0) first raises the noise of the states
whose sigma_i lies in [S_tmin, S_tmax] to sigma_hat = (1 + gamma) sigma_i, gamma =
min(S_churn / N, sqrt(2) - 1), by adding fresh noise of std S_noise sqrt(sigma_hat^2 -
sigma_i^2): a Langevin-like correction of the errors earlier steps made.

The network only knows the T discrete timesteps, so every sigma the algorithm asks about is
moved to the nearest discrete sigma_t (in log sigma) and the ODE is integrated between those
exact values: the network is never asked about a t it was not trained on, and the grid starts
at t = T-1 (x_T ~ N(0, I) is sigma_max's marginal) and ends at t = 0. Noise levels that round
to the same t are visited once. Works for every objective (eps, x0, v, flow) through
``GaussianDiffusion.model_to_x0_eps``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from tqdm.auto import tqdm

from catdiff.diffusion.gaussian import GaussianDiffusion
from catdiff.diffusion.samplers import Model, SampleResult, _noise_like, _record_plan
from catdiff.errors import UserError


def edm_sigmas(diffusion: GaussianDiffusion) -> torch.Tensor:
    """sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) for t = 0..T-1, float64 on the host."""
    alpha_bar = diffusion.alpha_bar.detach().to("cpu", torch.float64)
    return ((1 - alpha_bar) / alpha_bar).sqrt()


def nearest_t(log_sigmas: torch.Tensor, sigma: float) -> int:
    """The timestep whose log sigma_t is nearest log ``sigma``."""
    return int((log_sigmas - math.log(sigma)).abs().argmin())


class HeunSampler:
    """EDM's deterministic 2nd-order Heun sampler with optional stochastic churn.

    Args:
        steps: noise levels N (config key ``sampler.steps``); 2N - 1 network evaluations.
        rho: the grid's exponent (``sampler.rho``), 7 in EDM; 1 is evenly spaced in sigma.
        clip_x0: clip each x0 estimate D to [-1, 1], as catdiff's other samplers do.
        s_churn: total churn (``sampler.s_churn``); 0 is the deterministic ODE solver.
        s_tmin, s_tmax: churn only where s_tmin <= sigma_i <= s_tmax (s_tmax null: no bound).
        s_noise: std of the added noise relative to the exact amount (EDM: 1.0-1.007).
    """

    name = "heun"

    def __init__(
        self,
        steps: int = 18,
        rho: float = 7.0,
        clip_x0: bool = True,
        s_churn: float = 0.0,
        s_tmin: float = 0.0,
        s_tmax: float | None = None,
        s_noise: float = 1.0,
    ) -> None:
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 2:
            raise UserError(f"sampler.steps={steps!r} must be an integer >= 2 (e.g. 18)")
        if not rho > 0:
            raise UserError(f"sampler.rho={rho!r} must be > 0 (EDM: 7)")
        for key, value in (("s_churn", s_churn), ("s_tmin", s_tmin), ("s_noise", s_noise)):
            if not value >= 0:
                raise UserError(f"sampler.{key}={value!r} must be >= 0")
        if s_tmax is not None and not s_tmax >= s_tmin:
            raise UserError(f"sampler.s_tmax={s_tmax!r} must be >= sampler.s_tmin={s_tmin!r}")
        self.steps, self.rho, self.clip_x0 = steps, float(rho), clip_x0
        self.s_churn, self.s_tmin, self.s_noise = float(s_churn), float(s_tmin), float(s_noise)
        self.s_tmax = math.inf if s_tmax is None else float(s_tmax)

    def __repr__(self) -> str:
        churn = (
            f", s_churn={self.s_churn}, s_tmin={self.s_tmin}, s_tmax={self.s_tmax}, "
            f"s_noise={self.s_noise}"
            if self.s_churn > 0
            else ""
        )
        return f"HeunSampler(steps={self.steps}, rho={self.rho}, clip_x0={self.clip_x0}{churn})"

    def timesteps(self, diffusion: GaussianDiffusion) -> list[int]:
        """The discrete timesteps of the sigma^(1/rho) grid, T-1 down to 0, each once."""
        T = diffusion.T
        if self.steps > T:
            raise UserError(f"sampler.steps={self.steps} must be at most diffusion.T={T}")
        log_sigmas = edm_sigmas(diffusion).log()
        hi, lo = math.exp(float(log_sigmas[-1])), math.exp(float(log_sigmas[0]))
        ramp = torch.linspace(0, 1, self.steps, dtype=torch.float64)
        grid = (
            hi ** (1 / self.rho) + ramp * (lo ** (1 / self.rho) - hi ** (1 / self.rho))
        ) ** self.rho
        chosen = [T - 1]
        for sigma in grid[1:].tolist():
            t = nearest_t(log_sigmas, sigma)
            if t < chosen[-1]:
                chosen.append(t)
        if chosen[-1] != 0:
            chosen.append(0)
        return chosen

    def nfe(self, diffusion: GaussianDiffusion) -> int:
        """Network evaluations per sample: two per Heun step, one for the final Euler step."""
        return 2 * len(self.timesteps(diffusion)) - 1

    def _churned(self, sigmas: torch.Tensor, t: int, n: int) -> int:
        """The timestep whose sigma is nearest (1 + gamma) sigma_t, never below t."""
        sigma = float(sigmas[t])
        if self.s_churn == 0 or not self.s_tmin <= sigma <= self.s_tmax:
            return t
        gamma = min(self.s_churn / n, math.sqrt(2) - 1)
        return max(t, nearest_t(sigmas.log(), sigma * (1 + gamma)))

    def __call__(
        self,
        model: Model,
        diffusion: GaussianDiffusion,
        x_T: torch.Tensor,
        generator: torch.Generator | None = None,
        record: Iterable[int] = (),
        progress: bool = False,
    ) -> SampleResult:
        """Denoise x_T (B, C, H, W); ``record`` keeps x_t at the visited timesteps."""
        timesteps = self.timesteps(diffusion)
        sigmas = edm_sigmas(diffusion)
        plan = _record_plan(record, timesteps + [-1], diffusion.T)
        trajectory: dict[int, torch.Tensor] = {}
        n = len(timesteps)

        def denoise(x: torch.Tensor, t: int) -> torch.Tensor:
            """D(x; sigma_t): the network's x0 for x_t = x / sqrt(1 + sigma_t^2)."""
            x_t = x / math.sqrt(1 + float(sigmas[t]) ** 2)
            t_batch = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
            x0, _ = diffusion.model_to_x0_eps(model(x_t, t_batch), x_t, t_batch)
            return x0.clamp(-1.0, 1.0) if self.clip_x0 else x0

        def keep(index: int, x: torch.Tensor, t: int) -> None:
            scale = 1 / math.sqrt(1 + float(sigmas[t]) ** 2) if t >= 0 else 1.0
            for r in plan.get(index, ()):
                trajectory[r] = (x * scale).detach().to("cpu", copy=True)

        with torch.inference_mode():
            x = x_T * math.sqrt(1 + float(sigmas[-1]) ** 2)  # x_edm = x_t / sqrt(alpha_bar_t)
            for i, t in enumerate(tqdm(timesteps, desc="Heun", disable=not progress)):
                keep(i, x, t)
                t_hat = self._churned(sigmas, t, n)
                sigma, sigma_hat = float(sigmas[t]), float(sigmas[t_hat])
                if t_hat != t:
                    extra = math.sqrt(sigma_hat**2 - sigma**2) * self.s_noise
                    x = x + extra * _noise_like(x, generator)
                d = (x - denoise(x, t_hat)) / sigma_hat
                if i + 1 == n:  # the last step lands on sigma = 0: Euler, x = D(x; sigma_hat)
                    x = x - sigma_hat * d
                    break
                sigma_next = float(sigmas[timesteps[i + 1]])
                euler = x + (sigma_next - sigma_hat) * d
                d_next = (euler - denoise(euler, timesteps[i + 1])) / sigma_next
                x = x + (sigma_next - sigma_hat) * 0.5 * (d + d_next)
            keep(n, x, -1)
        return SampleResult(x0=x, trajectory=trajectory)
