"""Samplers: turn noise x_T ~ N(0, I) into images with a trained network.

``DDPMSampler`` is the seed's ancestral loop over every timestep t = T-1..0; ``DDIMSampler``
(Song et al. 2021) skips timesteps and is deterministic at eta = 0. Both call the network as
``model(x_t, t_batch)`` with x_t (B, C, H, W) and t_batch a long tensor (B,), and return a
``SampleResult``. ``sample`` draws x_T from a seed so the same seed gives the same images.

Trajectories use the timestep t of x_t as key: the initial noise is x_{T-1} (for DDIM, the first
visited timestep), the state after the step from t = 0 is the image, key -1.
"""

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import torch
from tqdm.auto import tqdm

from catdiff.diffusion.gaussian import GaussianDiffusion, check_sigma
from catdiff.errors import UserError, check_choice

Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SPACINGS = ("leading", "trailing", "logsnr")
# Where "logsnr" spacing starts: lambda = log(alpha / sigma) no lower than this. Below it x_t is
# pure noise to the network's eye (alpha < 0.007) and steps there are wasted; DPM-Solver's own
# code truncates the cosine schedule at about this point (t = 0.9946, lambda = -4.8), and the
# seed's linear schedule ends at lambda(T-1) = -5.06, so there it changes nothing.
LOGSNR_MIN = -5.0


@dataclass
class SampleResult:
    """Output of a sampler.

    Attributes:
        x0: (B, C, H, W) generated images, on the device of x_T.
        trajectory: {t: x_t} for the requested timesteps, detached copies on the CPU.
    """

    x0: torch.Tensor
    trajectory: dict[int, torch.Tensor] = field(default_factory=dict)


class Sampler(Protocol):
    """What ``sample`` needs from a sampler."""

    def nfe(self, diffusion: GaussianDiffusion) -> int: ...

    def __call__(
        self,
        model: Model,
        diffusion: GaussianDiffusion,
        x_T: torch.Tensor,
        generator: torch.Generator | None = None,
        record: Iterable[int] = (),
        progress: bool = False,
    ) -> SampleResult: ...


def _record_plan(record: Iterable[int], states: list[int], T: int) -> dict[int, list[int]]:
    """Map each requested timestep to the index of the chain state that shows it.

    ``states`` are the timesteps of the chain's states in order (ending with -1, the image).
    A timestep the chain skips (DDIM) gets the first state at or below it, i.e. the sample as
    it was when the chain passed that noise level.
    """
    plan: dict[int, list[int]] = {}
    for t in sorted({int(r) for r in record}):
        if not -1 <= t < T:
            raise UserError(f"sampler.record has timestep {t}; timesteps lie in [-1, {T - 1}]")
        index = next(i for i, s in enumerate(states) if s <= t)
        plan.setdefault(index, []).append(t)
    return plan


def _run_chain(
    model: Model,
    x: torch.Tensor,
    timesteps: list[int],
    step: Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    record: Iterable[int],
    T: int,
    progress: bool,
    desc: str,
) -> SampleResult:
    """Call ``step(i, model_output, x_t, t_batch) -> x_next`` for each timestep, recording states."""
    plan = _record_plan(record, timesteps + [-1], T)
    trajectory: dict[int, torch.Tensor] = {}

    def keep(index: int, state: torch.Tensor) -> None:
        for t in plan.get(index, ()):
            # copy=True: on a CPU run .to("cpu") would otherwise alias the live tensor.
            trajectory[t] = state.detach().to("cpu", copy=True)

    with torch.inference_mode():
        for i, t in enumerate(tqdm(timesteps, desc=desc, disable=not progress)):
            keep(i, x)
            t_batch = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
            x = step(i, model(x, t_batch), x, t_batch)
        keep(len(timesteps), x)
    return SampleResult(x0=x, trajectory=trajectory)


def _noise_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """z ~ N(0, I) shaped like x, from ``generator`` (so a seed fixes the whole chain)."""
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


class DDPMSampler:
    """Ancestral sampling, the seed's loop (Ho et al. 2020, Algorithm 2), with 0-based t:

        x_{T-1} ~ N(0, I)
        for t = T-1, ..., 0:
            z ~ N(0, I) if t > 0 else z = 0
            x_{t-1} = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) NN(x_t, t))
                      + sqrt(beta_tilde_t) z
        return the final x (the seed's typo ``+ beta_tilde_t z`` corrected to the std).

    Args:
        sigma: reverse variance (config key ``sampler.sigma``): ``"beta_tilde"`` (the seed) or
            ``"beta"`` (beta_t, Ho et al. 2020's other choice).
        clip_x0: clip the predicted x0 to [-1, 1] before forming the mean (Ho et al. 2020);
            with clip_x0=False and eps prediction the mean is exactly the seed's formula.
    """

    def __init__(self, sigma: str = "beta_tilde", clip_x0: bool = True) -> None:
        check_sigma(sigma)
        self.sigma = sigma
        self.clip_x0 = clip_x0

    def __repr__(self) -> str:
        return f"DDPMSampler(sigma={self.sigma!r}, clip_x0={self.clip_x0})"

    def nfe(self, diffusion: GaussianDiffusion) -> int:
        """Network evaluations per sample: one per timestep, T."""
        return diffusion.T

    def timesteps(self, diffusion: GaussianDiffusion) -> list[int]:
        """The visited timesteps, T-1 down to 0."""
        return list(range(diffusion.T - 1, -1, -1))

    def __call__(
        self,
        model: Model,
        diffusion: GaussianDiffusion,
        x_T: torch.Tensor,
        generator: torch.Generator | None = None,
        record: Iterable[int] = (),
        progress: bool = False,
    ) -> SampleResult:
        """Denoise x_T (B, C, H, W) with ``model``; ``record`` lists timesteps to keep in the trajectory."""
        timesteps = self.timesteps(diffusion)

        def step(i: int, out: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            # Checked on the Python int, not on the tensor, so no host sync; z = 0 on the last step.
            noise = _noise_like(x, generator) if timesteps[i] > 0 else None
            return diffusion.ddpm_step(out, x, t, noise, self.clip_x0, self.sigma)

        return _run_chain(model, x_T, timesteps, step, record, diffusion.T, progress, "DDPM")


def ddim_timesteps(T: int, steps: int, spacing: str = "trailing") -> list[int]:
    """The ``steps`` timesteps DDIM visits, in decreasing order.

    ``"leading"``: step_ratio = T // steps, timesteps = arange(steps) * step_ratio reversed
    (diffusers' DDIMScheduler default; the first step is below T-1 when T // steps leaves a gap).
    ``"trailing"``: round(arange(T, 0, -T / steps)) - 1, so the first step is t = T-1, where
    x_T ~ N(0, I) actually matches the training distribution (Lin et al. 2024, "Common diffusion
    noise schedules and sample steps are flawed").
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= T:
        raise UserError(f"sampler.steps={steps!r} must be an integer in [1, diffusion.T={T}]")
    if spacing == "leading":
        step_ratio = T // steps
        return [i * step_ratio for i in range(steps - 1, -1, -1)]
    if spacing == "trailing":
        # float64 arithmetic and round-half-to-even as numpy's arange/round in diffusers.
        start = torch.arange(steps, dtype=torch.float64) * (-T / steps) + T
        return (start.round() - 1).long().tolist()
    raise UserError(f"ddim_timesteps: spacing={spacing!r} must be leading or trailing")


def logsnr_timesteps(
    alpha_bar: torch.Tensor, steps: int, lambda_min: float = LOGSNR_MIN
) -> list[int]:
    """``steps`` timesteps evenly spaced in log-SNR, in decreasing order (DPM-Solver's
    ``skip_type="logSNR"``, Lu et al. 2022, which they recommend for low-resolution images).

    The grid runs evenly from max(lambda_{T-1}, ``lambda_min``) to lambda_0, with lambda_t =
    log(sqrt(alpha_bar_t) / sqrt(1 - alpha_bar_t)); its first point is t = T-1, where x_T ~
    N(0, I) matches, the others the timesteps whose lambda_t is nearest. Uniform steps in time (DDIM's
    spacings) spend most evaluations where the image is still mostly noise and end at t =
    T/steps, leaving a large last jump to the image; even log-SNR steps end at t = 0. Timesteps
    that round to the same t are visited once, so at large ``steps`` there may be fewer.
    """
    T = alpha_bar.shape[0]
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= T:
        raise UserError(f"sampler.steps={steps!r} must be an integer in [1, diffusion.T={T}]")
    alpha_bar = alpha_bar.detach().to("cpu", torch.float64)
    lam = 0.5 * (alpha_bar.log() - (-alpha_bar).log1p())
    grid = torch.linspace(max(float(lam[-1]), lambda_min), float(lam[0]), steps)
    nearest = (lam[None, :] - grid[:, None]).abs().argmin(dim=1).tolist()
    chosen = [T - 1]  # the grid's first point: x_T is pure noise, whatever lambda_{T-1} is
    for t in nearest[1:]:
        if t < chosen[-1]:
            chosen.append(t)
    return chosen


def ddim_step(
    diffusion: GaussianDiffusion,
    model_output: torch.Tensor,
    x_t: torch.Tensor,
    t: torch.Tensor | int,
    t_prev: int,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
    clip_x0: bool = True,
    rederive_eps: bool = True,
) -> torch.Tensor:
    """One DDIM update from timestep t to t_prev < t (Song et al. 2021, eq. 12):

        x_{t_prev} = sqrt(alpha_bar_{t_prev}) x0_pred
                     + sqrt(1 - alpha_bar_{t_prev} - sigma_t^2) eps_pred + sigma_t z
        sigma_t    = eta sqrt((1 - alpha_bar_{t_prev}) / (1 - alpha_bar_t))
                         sqrt(1 - alpha_bar_t / alpha_bar_{t_prev})

    Args:
        t: int or (B,) long tensor, the timestep of x_t (B, C, H, W).
        t_prev: the next timestep of the chain; -1 means the image (alpha_bar_{-1} = 1).
        eta: 0 is deterministic DDIM, 1 has DDPM's variance (beta_tilde when t_prev = t - 1).
        noise: z ~ N(0, I) (B, C, H, W); needed when eta > 0, ignored otherwise.
        clip_x0: clip x0_pred to [-1, 1] (Ho et al. 2020).
        rederive_eps: with clip_x0, re-derive eps_pred from the clipped x0 so that
            x_t = sqrt(alpha_bar_t) x0_pred + sqrt(1 - alpha_bar_t) eps_pred still holds
            (Nichol & Dhariwal 2021's guided-diffusion; diffusers' use_clipped_model_output=True).
            False keeps the network's eps (diffusers' DDIMScheduler default). On a linear-schedule
            eps network the early x0 estimates are far outside [-1, 1] (alpha_bar_{T-1} ~ 4e-5):
            eps re-derived from their clipped values is no longer the network's noise estimate,
            and the chain can end noisy (the README's "Sample" section shows both).
    """
    x0_pred, eps_pred = diffusion.model_to_x0_eps(model_output, x_t, t)
    if clip_x0:
        x0_pred = x0_pred.clamp(-1.0, 1.0)
        if rederive_eps:
            eps_pred = diffusion.predict_eps_from_x0(x_t, t, x0_pred)
    alpha_bar = diffusion.alpha_bar[t].to(x_t.dtype).reshape(-1, *([1] * (x_t.ndim - 1)))
    # Indexing with a Python int yields a device scalar: no host sync.
    alpha_bar_prev = (
        diffusion.alpha_bar[t_prev] if t_prev >= 0 else diffusion.alpha_bar.new_ones(())
    )
    alpha_bar_prev = alpha_bar_prev.to(x_t.dtype)
    x_prev_mean = alpha_bar_prev.sqrt() * x0_pred
    if eta == 0:
        return x_prev_mean + (1 - alpha_bar_prev).sqrt() * eps_pred
    if noise is None:
        raise ValueError("ddim_step needs noise when eta > 0")
    sigma = eta * ((1 - alpha_bar_prev) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_prev)).sqrt()
    # clamp: rounding can push 1 - alpha_bar_prev - sigma^2 a hair below 0 when eta = 1.
    direction = (1 - alpha_bar_prev - sigma**2).clamp(min=0).sqrt()
    return x_prev_mean + direction * eps_pred + sigma * noise


class _StridedSampler:
    """What DDIM and DPM-Solver share: ``steps`` network evaluations at timesteps spaced by
    ``spacing`` (see ``ddim_timesteps``)."""

    steps: int
    spacing: str

    def _check(self, steps: int, spacing: str, example: int) -> None:
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise UserError(f"sampler.steps={steps!r} must be a positive integer (e.g. {example})")
        check_choice("sampler.spacing", spacing, SPACINGS)
        self.steps, self.spacing = steps, spacing

    def nfe(self, diffusion: GaussianDiffusion) -> int:
        """Network evaluations per sample: ``steps`` (checked against T)."""
        return len(self.timesteps(diffusion))

    def timesteps(self, diffusion: GaussianDiffusion) -> list[int]:
        """The visited timesteps in decreasing order (``ddim_timesteps``, ``logsnr_timesteps``)."""
        if self.spacing == "logsnr":
            return logsnr_timesteps(diffusion.alpha_bar, self.steps)
        return ddim_timesteps(diffusion.T, self.steps, self.spacing)


class DDIMSampler(_StridedSampler):
    """Denoising diffusion implicit models (Song et al. 2021): ``steps`` jumps instead of T.

    Args:
        steps: number of network evaluations (config key ``sampler.steps``), 1 <= steps <= T.
        eta: stochasticity (config key ``sampler.eta``): 0 deterministic DDIM, 1 DDPM-like.
        clip_x0: clip the predicted x0 to [-1, 1] (see ``ddim_step``).
        rederive_eps: with clip_x0, take eps from the clipped x0 (``sampler.rederive_eps``, see
            ``ddim_step``).
        spacing: which timesteps to visit (``sampler.spacing``, see ``ddim_timesteps``):
            ``"trailing"``, ``"leading"`` or ``"logsnr"``.
    """

    def __init__(
        self,
        steps: int = 50,
        eta: float = 0.0,
        clip_x0: bool = True,
        spacing: str = "trailing",
        rederive_eps: bool = True,
    ) -> None:
        self._check(steps, spacing, example=50)
        if not eta >= 0:
            raise UserError(f"sampler.eta={eta!r} must be >= 0 (0 = deterministic DDIM)")
        if not isinstance(rederive_eps, bool):
            raise UserError(f"sampler.rederive_eps={rederive_eps!r} must be true or false")
        self.eta = float(eta)
        self.clip_x0 = clip_x0
        self.rederive_eps = rederive_eps

    def __repr__(self) -> str:
        return (
            f"DDIMSampler(steps={self.steps}, eta={self.eta}, clip_x0={self.clip_x0}, "
            f"spacing={self.spacing!r}, rederive_eps={self.rederive_eps})"
        )

    def __call__(
        self,
        model: Model,
        diffusion: GaussianDiffusion,
        x_T: torch.Tensor,
        generator: torch.Generator | None = None,
        record: Iterable[int] = (),
        progress: bool = False,
    ) -> SampleResult:
        """Denoise x_T (B, C, H, W) with ``model``; ``record`` lists timesteps to keep in the trajectory."""
        timesteps = self.timesteps(diffusion)
        prev = timesteps[1:] + [-1]

        def step(i: int, out: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            # No noise on the last step: sigma_t is 0 when t_prev = -1.
            noisy = self.eta > 0 and prev[i] >= 0
            noise = _noise_like(x, generator) if noisy else None
            return ddim_step(
                diffusion,
                out,
                x,
                t,
                prev[i],
                self.eta if noisy else 0.0,
                noise,
                self.clip_x0,
                self.rederive_eps,
            )

        return _run_chain(model, x_T, timesteps, step, record, diffusion.T, progress, "DDIM")


class DPMSolverSampler(_StridedSampler):
    """DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2): a second-order multistep
    solver of the probability-flow ODE in data (x0) prediction, deterministic like DDIM but
    more accurate at the same number of network evaluations.

    With alpha_t = sqrt(alpha_bar_t), sigma_t = sqrt(1 - alpha_bar_t), lambda_t =
    log(alpha_t / sigma_t) and h_i = lambda_{t_i} - lambda_{t_{i-1}}, each step is

        x_{t_i} = sigma_{t_i} / sigma_{t_{i-1}} x_{t_{i-1}} - alpha_{t_i} (e^{-h_i} - 1) D_i
        D_i     = (1 + 1 / (2 r_i)) x0_{i-1} - 1 / (2 r_i) x0_{i-2},   r_i = h_{i-1} / h_i

    (first order, i.e. DDIM, on the first step and on the last one, which lands on the image
    with sigma = 0, as diffusers' ``final_sigmas_type="zero"``). ``steps`` is the number of
    network evaluations.

    With ``sde=True`` it solves the reverse SDE instead (SDE-DPM-Solver++(2M), Lu et al. 2022,
    section 5; diffusers' ``algorithm_type="sde-dpmsolver++"``): fresh noise z at each step,

        x_{t_i} = sigma_{t_i} / sigma_{t_{i-1}} e^{-h_i} x_{t_{i-1}} + alpha_{t_i} (1 - e^{-2 h_i}) D_i
                  + sigma_{t_i} sqrt(1 - e^{-2 h_i}) z

    whose first-order form is DDIM with eta = 1. The noise re-injects detail that the ODE's
    deterministic steps average away; z comes from the sampling generator, so a seed still
    fixes the images.

    Args:
        steps: network evaluations (config key ``sampler.steps``), 1 <= steps <= T.
        clip_x0: clip each x0 prediction to [-1, 1] (the solver's "thresholding", simplest form).
        sde: solve the reverse SDE (stochastic, above) instead of the probability-flow ODE.
        spacing: ``"logsnr"`` (default: even steps in log-SNR, see ``logsnr_timesteps``), or
            DDIM's ``"trailing"`` / ``"leading"``. Even log-SNR steps spend the evaluations
            where the image forms and end at t = 0; on the cat faces they scored far better
            than trailing ones at the same 20-25 evaluations
            (experiments/vs_diffusers/REPORT.md, ``catdiff-trailing``).
    """

    def __init__(
        self, steps: int = 20, clip_x0: bool = True, spacing: str = "logsnr", sde: bool = False
    ) -> None:
        self._check(steps, spacing, example=20)
        if not isinstance(sde, bool):
            raise UserError(f"sampler.sde={sde!r} must be true or false")
        self.clip_x0 = clip_x0
        self.sde = sde

    def __repr__(self) -> str:
        sde = ", sde=True" if self.sde else ""
        return (
            f"DPMSolverSampler(steps={self.steps}, clip_x0={self.clip_x0}, "
            f"spacing={self.spacing!r}{sde})"
        )

    def __call__(
        self,
        model: Model,
        diffusion: GaussianDiffusion,
        x_T: torch.Tensor,
        generator: torch.Generator | None = None,
        record: Iterable[int] = (),
        progress: bool = False,
    ) -> SampleResult:
        timesteps = self.timesteps(diffusion)
        # Per-timestep constants in float64 on the host: a handful of numbers, no device sync.
        alpha_bar = diffusion.alpha_bar.detach().to("cpu", torch.float64)
        chain = [*timesteps, -1]
        alpha = [float(alpha_bar[t].sqrt()) if t >= 0 else 1.0 for t in chain]
        sigma = [float((1 - alpha_bar[t]).sqrt()) if t >= 0 else 0.0 for t in chain]
        lam = [math.log(a / s) if s > 0 else math.inf for a, s in zip(alpha, sigma)]
        history: list[torch.Tensor] = []

        def step(i: int, out: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            x0, _ = diffusion.model_to_x0_eps(out, x, t)
            if self.clip_x0:
                x0 = x0.clamp(-1.0, 1.0)
            history[:] = [*history[-1:], x0]
            if chain[i + 1] < 0:  # the last step lands on the image: x = D (first order)
                return x0
            h = lam[i + 1] - lam[i]
            if len(history) == 1:
                d = x0
            else:
                r = (lam[i] - lam[i - 1]) / h
                d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * history[0]
            if not self.sde:
                return (sigma[i + 1] / sigma[i]) * x - alpha[i + 1] * math.expm1(-h) * d
            fresh = -math.expm1(-2 * h)  # 1 - e^{-2h}
            return (
                (sigma[i + 1] / sigma[i] * math.exp(-h)) * x
                + alpha[i + 1] * fresh * d
                + sigma[i + 1] * math.sqrt(fresh) * _noise_like(x, generator)
            )

        return _run_chain(
            model, x_T, timesteps, step, record, diffusion.T, progress, "DPM-Solver++"
        )


def sample(
    sampler: Sampler,
    model: Model,
    diffusion: GaussianDiffusion,
    n: int,
    shape: tuple[int, int, int],
    seed: int = 0,
    device: torch.device | str = "cpu",
    record: Iterable[int] = (),
    progress: bool = False,
) -> SampleResult:
    """Generate n images of shape (C, H, W) from a seed.

    A ``torch.Generator(device).manual_seed(seed)`` draws x_T and then every z of the chain, so
    the same seed gives the same images on the same machine. ``model`` and ``diffusion`` must
    already be on ``device`` (and the model in eval mode).

    Returns:
        SampleResult with x0 of shape (n, C, H, W) on ``device``.
    """
    device = torch.device(device)
    generator = torch.Generator(device).manual_seed(seed)
    x_T = torch.randn((n, *shape), generator=generator, device=device)
    return sampler(model, diffusion, x_T, generator=generator, record=record, progress=progress)
