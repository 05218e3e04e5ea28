"""DDPM and DDIM samplers: against diffusers' loops, an oracle model, and their contracts."""

import copy

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from catdiff.diffusion import (
    OBJECTIVES,
    DDIMSampler,
    DDPMSampler,
    DPMSolverSampler,
    GaussianDiffusion,
    ddim_timesteps,
    logsnr_timesteps,
    make_betas,
    sample,
)
from catdiff.diffusion.heun import HeunSampler
from catdiff.errors import UserError

T = 50
SHAPE = (1, 4, 4)
C = 0.3  # the single point of the oracle's data distribution


def toy_model(x, t):
    """A fixed, t-dependent stand-in for a network (any function works for equivalence tests)."""
    return 0.8 * torch.tanh(x) + 0.02 * t.view(-1, 1, 1, 1).to(x.dtype) - 0.3


def float64_alpha_bar(scheduler, schedule="linear"):
    """diffusers' float32 alpha_bar loses ~1e-4 in beta_t at small t (1 - ratio cancels);
    test_schedules.py checks its betas, here we compare the algorithm on float64 alpha_bar."""
    scheduler.alphas_cumprod = torch.cumprod(1 - make_betas(schedule, T), 0)
    scheduler.one = torch.tensor(1.0, dtype=torch.float64)
    return scheduler


def oracle(diffusion):
    """The exact network for data x0 = C everywhere: eps = (x_t - sqrt(alpha_bar_t) C) /
    sqrt(1 - alpha_bar_t), returned as the diffusion's objective (eps, x0 or v)."""

    def model(x_t, t):
        x0 = torch.full_like(x_t, C)
        return diffusion.target(x0, t, diffusion.predict_eps_from_x0(x_t, t, x0))

    return model


# ---- against diffusers --------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("clip", [False, True])
def test_ddpm_sampler_equals_diffusers_loop(schedule, clip):
    d = GaussianDiffusion(make_betas(schedule, T))
    ours = sample(DDPMSampler(clip_x0=clip), toy_model, d, n=2, shape=SHAPE, seed=3).x0

    beta_schedule = {"linear": "linear", "cosine": "squaredcos_cap_v2"}[schedule]
    scheduler = DDPMScheduler(
        num_train_timesteps=T,
        beta_schedule=beta_schedule,
        clip_sample=clip,
        variance_type="fixed_small",
    )
    scheduler = float64_alpha_bar(scheduler, schedule)
    generator = torch.Generator().manual_seed(3)
    x = torch.randn((2, *SHAPE), generator=generator)
    for t in scheduler.timesteps:
        out = toy_model(x, torch.full((2,), int(t)))
        x = scheduler.step(out, int(t), x, generator=generator).prev_sample
    torch.testing.assert_close(ours, x, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("steps", [10, 7])
@pytest.mark.parametrize(
    ("eta", "clip", "rederive"),
    [(0.0, False, True), (0.0, True, True), (0.0, True, False), (1.0, False, True)],
)
def test_ddim_sampler_leading_equals_diffusers_loop(steps, eta, clip, rederive):
    d = GaussianDiffusion(make_betas("linear", T))
    sampler = DDIMSampler(
        steps=steps, eta=eta, clip_x0=clip, spacing="leading", rederive_eps=rederive
    )
    ours = sample(sampler, toy_model, d, n=2, shape=SHAPE, seed=4).x0

    scheduler = float64_alpha_bar(
        DDIMScheduler(num_train_timesteps=T, clip_sample=clip, set_alpha_to_one=True)
    )
    scheduler.set_timesteps(steps)
    generator = torch.Generator().manual_seed(4)
    x = torch.randn((2, *SHAPE), generator=generator)
    for t in scheduler.timesteps:
        out = toy_model(x, torch.full((2,), int(t)))
        # use_clipped_model_output: eps re-derived from the clipped x0 (ours: rederive_eps)
        x = scheduler.step(
            out, int(t), x, eta=eta, use_clipped_model_output=rederive, generator=generator
        ).prev_sample
    torch.testing.assert_close(ours, x, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize(
    ("T_", "steps"), [(50, 10), (50, 7), (50, 3), (50, 50), (50, 1), (1000, 30)]
)
def test_ddim_timesteps_equal_diffusers(spacing, T_, steps):
    scheduler = DDIMScheduler(num_train_timesteps=T_, timestep_spacing=spacing)
    scheduler.set_timesteps(steps)
    assert ddim_timesteps(T_, steps, spacing) == scheduler.timesteps.tolist()


def test_trailing_starts_at_the_last_timestep():
    assert ddim_timesteps(50, 7, "trailing")[0] == 49
    assert ddim_timesteps(50, 7, "leading")[0] == 42


# ---- the oracle model -----------------------------------------------------------------------------


SAMPLERS = {
    "ddpm": DDPMSampler(),
    "ddpm-beta": DDPMSampler(sigma="beta"),
    "ddpm-noclip": DDPMSampler(clip_x0=False),
    "ddim-trailing": DDIMSampler(steps=10),
    "ddim-leading": DDIMSampler(steps=7, spacing="leading"),
    "ddim-eta1": DDIMSampler(steps=10, eta=1.0, clip_x0=False),
    "dpm-logsnr": DPMSolverSampler(steps=10),
    "dpm-trailing": DPMSolverSampler(steps=10, spacing="trailing"),
    "heun": HeunSampler(steps=10),
    "heun-churn": HeunSampler(steps=10, s_churn=10.0),
}


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("name", SAMPLERS)
def test_oracle_model_recovers_the_data_point(name, objective):
    d = GaussianDiffusion(make_betas("cosine", T), objective=objective)
    result = sample(SAMPLERS[name], oracle(d), d, n=4, shape=SHAPE, seed=0)
    torch.testing.assert_close(result.x0, torch.full((4, *SHAPE), C), rtol=0, atol=1e-4)


@pytest.mark.parametrize("name", ["ddpm", "ddim-trailing", "ddim-eta1"])
def test_oracle_chain_has_the_forward_marginals(name):
    # For a point mass at C, the exact reverse chain has q's marginals at every visited t:
    # x_t ~ N(sqrt(alpha_bar_t) C, 1 - alpha_bar_t). 4096 scalars per timestep. Cosine, because
    # its alpha_bar_{T-1} ~ 0 makes x_{T-1} ~ N(0, I) the exact start (linear at T=50: 0.6).
    d = GaussianDiffusion(make_betas("cosine", T))
    sampler = SAMPLERS[name]
    visited = sampler.timesteps(d)
    record = [visited[len(visited) // 2], visited[-1]]
    result = sample(sampler, oracle(d), d, n=64, shape=(1, 8, 8), seed=1, record=record)
    for t in record:
        x_t = result.trajectory[t]
        alpha_bar = d.alpha_bar[t].item()
        std = (1 - alpha_bar) ** 0.5
        assert abs(x_t.mean().item() - alpha_bar**0.5 * C) < 5 * std / 64
        assert abs(x_t.var().item() / (1 - alpha_bar) - 1) < 5 * (2 / 4096) ** 0.5


def test_sigma_beta_changes_the_chain():
    d = GaussianDiffusion(make_betas("cosine", T))
    small = sample(DDPMSampler(), oracle(d), d, n=64, shape=(1, 8, 8), seed=1, record=[10])
    large = sample(
        DDPMSampler(sigma="beta"), oracle(d), d, n=64, shape=(1, 8, 8), seed=1, record=[10]
    )
    # beta_t > beta_tilde_t: the spread at t = 10 grows beyond q's marginal variance
    assert large.trajectory[10].var() > small.trajectory[10].var() * 1.02


# ---- contracts --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sampler", [DDPMSampler(), DDIMSampler(steps=5), DDIMSampler(steps=5, eta=0.5)], ids=repr
)
def test_same_seed_same_images_other_seed_other_images(sampler):
    d = GaussianDiffusion(make_betas("linear", 20))
    first = sample(sampler, toy_model, d, n=3, shape=SHAPE, seed=7).x0
    again = sample(sampler, toy_model, d, n=3, shape=SHAPE, seed=7).x0
    other = sample(sampler, toy_model, d, n=3, shape=SHAPE, seed=8).x0
    assert first.shape == (3, *SHAPE)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


@pytest.mark.parametrize("sampler", [DDPMSampler(), DDIMSampler(steps=5)], ids=repr)
def test_model_is_called_nfe_times_with_long_timesteps_under_inference_mode(sampler):
    d = GaussianDiffusion(make_betas("linear", 20))
    seen = []

    def model(x, t):
        assert t.dtype == torch.long and t.shape == (x.shape[0],)
        assert torch.is_inference_mode_enabled()
        seen.append(int(t[0]))
        return toy_model(x, t)

    sample(sampler, model, d, n=2, shape=SHAPE)
    assert len(seen) == sampler.nfe(d)
    assert seen == sampler.timesteps(d)
    expected = list(range(19, -1, -1)) if isinstance(sampler, DDPMSampler) else [19, 15, 11, 7, 3]
    assert seen == expected


def test_trajectory_has_the_requested_keys_on_cpu():
    d = GaussianDiffusion(make_betas("linear", 20))
    result = sample(DDPMSampler(), toy_model, d, n=2, shape=SHAPE, seed=5, record=(19, 7, 0, -1))
    assert sorted(result.trajectory) == [-1, 0, 7, 19]
    assert all(
        x.device.type == "cpu" and x.shape == (2, *SHAPE) for x in result.trajectory.values()
    )
    x_T = torch.randn((2, *SHAPE), generator=torch.Generator().manual_seed(5))
    assert torch.equal(result.trajectory[19], x_T)  # x_{T-1} is the starting noise
    assert torch.equal(result.trajectory[-1], result.x0)
    # copies, so that editing the images in place leaves the trajectory intact
    assert result.trajectory[-1].data_ptr() != result.x0.data_ptr()
    assert not torch.equal(result.trajectory[7], result.trajectory[0])


def test_ddim_trajectory_maps_skipped_timesteps_to_the_next_state():
    d = GaussianDiffusion(make_betas("linear", 20))
    sampler = DDIMSampler(steps=4, spacing="trailing")  # visits 19, 14, 9, 4
    assert sampler.timesteps(d) == [19, 14, 9, 4]
    result = sample(sampler, toy_model, d, n=2, shape=SHAPE, record=(19, 12, 9, 2))
    assert sorted(result.trajectory) == [2, 9, 12, 19]
    assert torch.equal(result.trajectory[12], result.trajectory[9])  # passed t = 12 at t = 9
    assert torch.equal(result.trajectory[2], result.x0)  # after t = 4 comes the image
    with pytest.raises(UserError, match=r"sampler\.record"):
        sample(sampler, toy_model, d, n=2, shape=SHAPE, record=(20,))


def test_progress_bar(capsys):
    d = GaussianDiffusion(make_betas("linear", 10))
    sample(DDIMSampler(steps=3), toy_model, d, n=1, shape=SHAPE, progress=True)
    assert "DDIM" in capsys.readouterr().err


# ---- user errors -------------------------------------------------------------------------------


def test_ddim_steps_are_validated():
    d = GaussianDiffusion(make_betas("linear", 20))
    for steps in (0, -3):
        with pytest.raises(UserError, match=r"sampler\.steps"):
            DDIMSampler(steps=steps)
    too_many = DDIMSampler(steps=21)
    with pytest.raises(UserError, match=r"sampler\.steps") as excinfo:
        sample(too_many, toy_model, d, n=1, shape=SHAPE)
    assert "\n" not in str(excinfo.value)
    with pytest.raises(UserError, match=r"sampler\.steps"):
        too_many.nfe(d)
    assert DDIMSampler(steps=20).nfe(d) == 20


def test_other_sampler_options_are_validated():
    with pytest.raises(UserError, match=r"sampler\.eta"):
        DDIMSampler(eta=-0.1)
    with pytest.raises(UserError, match=r"sampler\.spacing"):
        DDIMSampler(spacing="linspace")
    with pytest.raises(UserError, match=r"sampler\.sigma"):
        DDPMSampler(sigma="learned")
    with pytest.raises(UserError, match=r"sampler\.rederive_eps"):
        DDIMSampler(rederive_eps="no")


def test_keeping_the_model_eps_changes_only_clipped_chains():
    """rederive_eps matters exactly when x0 gets clipped: a linear-schedule eps net's early x0."""
    d = GaussianDiffusion(make_betas("linear", T))

    def run(clip: bool, rederive: bool) -> torch.Tensor:
        sampler = DDIMSampler(steps=10, clip_x0=clip, rederive_eps=rederive)
        return sample(sampler, toy_model, d, n=2, shape=SHAPE, seed=4).x0

    assert not torch.allclose(run(True, True), run(True, False), atol=1e-3)
    torch.testing.assert_close(run(False, True), run(False, False))


# ---- DPM-Solver++(2M) -----------------------------------------------------------------------------


@pytest.mark.parametrize("objective", ["eps", "x0", "v"])  # diffusers has no flow
@pytest.mark.parametrize("steps", [20, 16])
@pytest.mark.parametrize("sde", [False, True])
def test_dpm_solver_equals_diffusers_multistep(objective, steps, sde):
    """Same chain as diffusers' DPMSolverMultistepScheduler (dpmsolver++, order 2, trailing,
    final sigma 0) at >= 15 steps, where diffusers only lowers the order on the last step.
    sde=True is its sde-dpmsolver++ (midpoint), noise drawn from the same generator in the
    same order: the same images from the same seed."""
    from diffusers import DPMSolverMultistepScheduler

    d = GaussianDiffusion(make_betas("linear", T), objective=objective)
    ours = DPMSolverSampler(steps=steps, clip_x0=False, spacing="trailing", sde=sde)
    ours = sample(ours, toy_model, d, n=2, shape=SHAPE, seed=3).x0

    prediction = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}[objective]
    scheduler = DPMSolverMultistepScheduler(
        num_train_timesteps=T,
        trained_betas=make_betas("linear", T).numpy(),
        algorithm_type="sde-dpmsolver++" if sde else "dpmsolver++",
        solver_order=2,
        prediction_type=prediction,
        timestep_spacing="trailing",
        final_sigmas_type="zero",
        lower_order_final=True,
    )
    scheduler.set_timesteps(steps)
    assert scheduler.timesteps.tolist() == ddim_timesteps(T, steps, "trailing")
    generator = torch.Generator().manual_seed(3)
    x = torch.randn((2, *SHAPE), generator=generator)
    for t in scheduler.timesteps:
        out = toy_model(x, torch.full((2,), int(t)))
        x = scheduler.step(out, t, x, generator=generator).prev_sample
    torch.testing.assert_close(ours, x, rtol=1e-4, atol=1e-4)


def test_sde_dpm_solver_is_seeded_and_differs_from_the_ode():
    d = GaussianDiffusion(make_betas("linear", T))
    sde = DPMSolverSampler(steps=10, sde=True)
    a = sample(sde, toy_model, d, n=2, shape=SHAPE, seed=5).x0
    b = sample(sde, toy_model, d, n=2, shape=SHAPE, seed=5).x0
    ode = sample(DPMSolverSampler(steps=10), toy_model, d, n=2, shape=SHAPE, seed=5).x0
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert (a - ode).abs().max() > 1e-3
    with pytest.raises(UserError, match="sampler.sde"):
        DPMSolverSampler(sde="yes")


def test_dpm_solver_is_second_order_where_ddim_is_first():
    """On the probability-flow ODE of Gaussian data (its exact eps known in closed form), the
    error against a 1000-step solution shrinks like 1/steps for DDIM and faster for
    DPM-Solver++(2M), which at 20 network evaluations is several times closer."""
    big_t = 1000
    d = GaussianDiffusion(make_betas("linear", big_t))
    mean, std = 0.2, 0.5  # data x0 ~ N(mean, std^2) per pixel

    def exact_eps(x_t, t):
        ab = d.alpha_bar[t].view(-1, 1, 1, 1).double()
        var = ab * std**2 + (1 - ab)
        # E[eps | x_t] for Gaussian data: sqrt(1 - ab) (x_t - sqrt(ab) mean) / var
        return ((1 - ab).sqrt() * (x_t.double() - ab.sqrt() * mean) / var).to(x_t.dtype)

    reference = sample(DDIMSampler(steps=big_t, clip_x0=False), exact_eps, d, 64, (1, 2, 2)).x0

    def error(sampler_class, steps):
        chosen = sampler_class(steps=steps, clip_x0=False, spacing="trailing")
        x0 = sample(chosen, exact_eps, d, 64, (1, 2, 2)).x0
        return float((x0 - reference).abs().mean())

    ddim = {k: error(DDIMSampler, k) for k in (20, 25, 50)}
    dpm = {k: error(DPMSolverSampler, k) for k in (20, 25, 50)}
    assert dpm[20] < 0.4 * ddim[20], (dpm, ddim)  # measured: 0.015 vs 0.050
    assert 0.4 < ddim[50] / ddim[25] < 0.6, ddim  # first order: twice the steps, half the error
    assert dpm[50] / dpm[25] < 0.3, dpm  # measured 0.22


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
@pytest.mark.parametrize("steps", [5, 20, 25])
def test_logsnr_timesteps_run_from_pure_noise_to_t0_evenly_in_log_snr(schedule, steps):
    d = GaussianDiffusion(make_betas(schedule, 1000))
    ts = logsnr_timesteps(d.alpha_bar, steps)
    assert len(ts) == steps and ts[0] == 999 and ts[-1] == 0
    assert all(a > b for a, b in zip(ts, ts[1:])), ts
    ab = d.alpha_bar.double()
    lam = (0.5 * (ab / (1 - ab)).log())[ts[1:]]
    gaps = lam.diff()
    # nearest discrete t to an even grid: equal gaps but for rounding t, which near t = 0
    # moves lambda by up to 0.4 per step of t (cosine: lambda_0 = 5.05, lambda_1 = 4.67)
    assert float((gaps - gaps.mean()).abs().max()) < 0.5 * float(gaps.mean()), gaps
    # the grid starts at lambda = -5 at most: the cosine schedule's last few t are skipped
    assert float(0.5 * (ab[ts[1]] / (1 - ab[ts[1]])).log()) > -5


def test_logsnr_spacing_is_validated_and_the_dpm_solver_default():
    assert DPMSolverSampler().spacing == "logsnr"
    d = GaussianDiffusion(make_betas("linear", 20))
    assert DDIMSampler(steps=5, spacing="logsnr").timesteps(d) == logsnr_timesteps(d.alpha_bar, 5)
    with pytest.raises(UserError, match=r"sampler\.steps"):
        logsnr_timesteps(GaussianDiffusion(make_betas("linear", 20)).alpha_bar, 21)


def test_logsnr_spacing_solves_fine_detail_far_more_accurately_than_trailing():
    """The probability-flow ODE of Gaussian data with a small variance (std 0.1, like an
    image's fine detail), cosine schedule: time-uniform steps end at t = T / steps and jump to
    the image from there, even log-SNR steps reach t = 0. At 20 network evaluations DPM-Solver++
    is then ~13x closer to a 1000-step solution (measured 0.0015 vs 0.019). (For large-variance
    data, std 0.5, trailing is the closer one at 20 steps: 0.0005 vs 0.006.)"""
    big_t = 1000
    d = GaussianDiffusion(make_betas("cosine", big_t))
    mean, std = 0.2, 0.1

    def exact_eps(x_t, t):
        ab = d.alpha_bar[t].view(-1, 1, 1, 1).double()
        var = ab * std**2 + (1 - ab)
        return ((1 - ab).sqrt() * (x_t.double() - ab.sqrt() * mean) / var).to(x_t.dtype)

    reference = sample(DDIMSampler(steps=big_t, clip_x0=False), exact_eps, d, 64, (1, 2, 2)).x0

    def error(spacing):
        chosen = DPMSolverSampler(steps=20, clip_x0=False, spacing=spacing)
        return float((sample(chosen, exact_eps, d, 64, (1, 2, 2)).x0 - reference).abs().mean())

    logsnr, trailing = error("logsnr"), error("trailing")
    assert logsnr < 0.2 * trailing, (logsnr, trailing)


def test_sampling_precision_casts_the_weights_once_and_keeps_the_sampler_in_fp32(monkeypatch):
    """precision=bf16 samples with a bf16 copy of the network (float32 in and out of it), close
    to the fp32 images; auto follows the hardware check; anything else is refused by name."""
    import catdiff.precision as hardware
    from catdiff.diffusion.generate import CastModel, with_precision
    from catdiff.models import UNet

    torch.manual_seed(0)
    net = UNet(base_channels=8, channel_mults=(1, 2), attention_levels=(1,), norm_groups=4).eval()
    with torch.no_grad():  # the output conv starts at zero: give every weight a value
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x, t = torch.randn(3, 1, 28, 28), torch.tensor([999, 500, 3])
    with torch.inference_mode():
        reference = net(x, t)
    fast, chosen = with_precision(copy.deepcopy(net), "bf16", torch.device("cpu"))
    assert chosen == "bf16" and isinstance(fast, CastModel)
    assert {p.dtype for p in fast.parameters()} == {torch.bfloat16}
    with torch.inference_mode():
        out = fast(x, t)
    assert out.dtype == torch.float32
    assert (out - reference).abs().max() < 0.05 * reference.abs().max()
    d = GaussianDiffusion(make_betas("linear", T))
    images = sample(DPMSolverSampler(steps=5), fast, d, n=2, shape=(1, 28, 28), seed=0).x0
    assert images.dtype == torch.float32

    assert with_precision(net, "fp32", torch.device("cpu")) == (net, "fp32")
    monkeypatch.setattr(hardware, "cpu_has_fast_bf16", lambda: False)
    assert with_precision(net, "auto", torch.device("cpu"))[1] == "fp32"
    monkeypatch.setattr(hardware, "cpu_has_fast_bf16", lambda: True)
    assert with_precision(copy.deepcopy(net), "auto", torch.device("cpu"))[1] == "bf16"
    with pytest.raises(UserError, match="precision=fp16 must be fp32, bf16 or auto"):
        with_precision(net, "fp16", torch.device("cpu"))


# ---- EDM's Heun sampler ---------------------------------------------------------------------------


def gaussian_problem(schedule: str = "linear", mean: float = 0.2, std: float = 0.5):
    """Data x0 ~ N(mean, std^2) per pixel: the exact eps network, and the exact solution of the
    probability-flow ODE. In EDM's variables x = x_t / sqrt(alpha_bar_t), sigma_t =
    sqrt((1 - alpha_bar_t) / alpha_bar_t), the ODE dx/dsigma = (x - E[x0 | x]) / sigma moves
    x - mean in proportion to sqrt(std^2 + sigma^2)."""
    d = GaussianDiffusion(make_betas(schedule, 1000))

    def exact_eps(x_t, t):
        ab = d.alpha_bar[t].view(-1, 1, 1, 1).double()
        var = ab * std**2 + (1 - ab)
        return ((1 - ab).sqrt() * (x_t.double() - ab.sqrt() * mean) / var).to(x_t.dtype)

    ab = d.alpha_bar.double()
    sigma = ((1 - ab) / ab).sqrt()

    def solution(x_T):
        """The ODE's x at sigma_0 (t = 0) from x_T at t = T-1, then the exact x0 estimate
        there (the last step of every sampler lands on E[x0 | x_0-noise-level])."""
        x = x_T.double() / ab[-1].sqrt()
        x = mean + (x - mean) * (std**2 + sigma[0] ** 2).sqrt() / (std**2 + sigma[-1] ** 2).sqrt()
        return (mean + std**2 / (std**2 + sigma[0] ** 2) * (x - mean)).float()

    return d, exact_eps, solution


def test_heun_is_second_order_and_beats_ddim_at_equal_network_evaluations():
    """Against the exact ODE solution of the Gaussian problem: doubling the steps cuts Heun's
    error ~4x (second order; DDIM, Euler's method in these variables, only ~2x), and at equal
    network evaluations (2 steps - 1) Heun is the closer."""
    d, exact_eps, solution = gaussian_problem()
    x_T = torch.randn((256, 1, 2, 2), generator=torch.Generator().manual_seed(0))
    reference = solution(x_T)

    def error(sampler):
        return float((sampler(exact_eps, d, x_T).x0 - reference).abs().mean())

    heun = {n: error(HeunSampler(steps=n, clip_x0=False)) for n in (20, 40, 80)}
    ddim = {n: error(DDIMSampler(steps=2 * n - 1, clip_x0=False)) for n in (20, 40, 80)}
    assert 0.15 < heun[40] / heun[20] < 0.35, heun
    assert 0.15 < heun[80] / heun[40] < 0.35, heun
    assert 0.4 < ddim[80] / ddim[40] < 0.6, ddim
    for n in heun:
        assert heun[n] < ddim[n], (heun, ddim)


def test_heun_grid_follows_karras_sigmas_and_counts_its_evaluations():
    d = GaussianDiffusion(make_betas("linear", 1000))
    sampler = HeunSampler(steps=10)
    ts = sampler.timesteps(d)
    assert ts[0] == 999 and ts[-1] == 0 and len(ts) == 10
    assert all(a > b for a, b in zip(ts, ts[1:]))
    ab = d.alpha_bar.double()
    sigma = ((1 - ab) / ab).sqrt()
    # even steps in sigma^(1/7) between sigma_{T-1} and sigma_0, up to rounding t
    root = sigma[ts] ** (1 / 7)
    gaps = root.diff()
    assert float((gaps - gaps.mean()).abs().max()) < 0.05 * float(gaps.mean().abs()), gaps
    seen = []

    def model(x, t):
        assert t.dtype == torch.long and torch.is_inference_mode_enabled()
        seen.append(int(t[0]))
        return toy_model(x, t)

    sample(sampler, model, d, n=2, shape=SHAPE)
    assert len(seen) == sampler.nfe(d) == 2 * 10 - 1
    assert set(seen) == set(ts)  # only timesteps the network was trained on


def test_heun_without_churn_is_deterministic_and_churn_keeps_the_distribution():
    """s_churn = 0 never draws noise: any generator, the same images. s_churn > 0 re-noises
    each state and so changes the samples, yet on the Gaussian problem they keep the data's
    mean and std (4096 scalars)."""
    d, exact_eps, _ = gaussian_problem(std=0.5)
    x_T = torch.randn((64, 1, 8, 8), generator=torch.Generator().manual_seed(1))

    def run(sampler, seed):
        return sampler(exact_eps, d, x_T, generator=torch.Generator().manual_seed(seed)).x0

    ode = HeunSampler(steps=80, clip_x0=False)
    torch.testing.assert_close(run(ode, 0), run(ode, 1), rtol=0, atol=0)
    churn = HeunSampler(steps=80, clip_x0=False, s_churn=8.0)  # gamma = 0.1 per step
    torch.testing.assert_close(run(churn, 3), run(churn, 3), rtol=0, atol=0)
    stochastic = run(churn, 3)
    assert (stochastic - run(ode, 0)).abs().mean() > 0.05
    assert (stochastic - run(churn, 4)).abs().mean() > 0.05
    for x0 in (run(ode, 0), stochastic):  # 4 standard errors, plus 80 steps' own error
        assert abs(x0.mean().item() - 0.2) < 4 * 0.5 / 64
        assert abs(x0.std().item() / 0.5 - 1) < 4 * (1 / (2 * 4096)) ** 0.5 + 0.01


def test_heun_churn_only_between_s_tmin_and_s_tmax():
    d, exact_eps, _ = gaussian_problem()
    x_T = torch.randn((4, 1, 2, 2), generator=torch.Generator().manual_seed(2))
    ode = HeunSampler(steps=10, clip_x0=False)(exact_eps, d, x_T).x0
    # every sigma of the grid is above 1e-3 and below 1e4: a window outside them is no churn
    none = HeunSampler(steps=10, clip_x0=False, s_churn=10.0, s_tmin=1e4, s_tmax=2e4)
    torch.testing.assert_close(none(exact_eps, d, x_T).x0, ode, rtol=0, atol=0)


def test_heun_options_are_validated():
    for kwargs, key in (
        ({"steps": 1}, "sampler.steps"),
        ({"rho": 0}, "sampler.rho"),
        ({"s_churn": -1.0}, "sampler.s_churn"),
        ({"s_noise": -0.1}, "sampler.s_noise"),
        ({"s_tmin": 2.0, "s_tmax": 1.0}, "sampler.s_tmax"),
    ):
        with pytest.raises(UserError, match=key):
            HeunSampler(**kwargs)
    with pytest.raises(UserError, match=r"sampler\.steps"):
        HeunSampler(steps=30).nfe(GaussianDiffusion(make_betas("linear", 20)))
