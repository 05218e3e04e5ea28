"""GaussianDiffusion against diffusers' DDPMScheduler and against the seed's formulas."""

import pytest
import torch
from diffusers import DDPMScheduler

from catdiff.diffusion import LOSSES, OBJECTIVES, GaussianDiffusion, make_betas
from catdiff.errors import UserError

T = 50
SHAPE = (3, 1, 4, 4)
DIFFUSERS_SCHEDULE = {"linear": "linear", "cosine": "squaredcos_cap_v2"}
DIFFUSERS_PREDICTION = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}
TIMESTEPS = [0, 1, T // 2, T - 1]


def make_pair(schedule="linear", objective="eps", clip=False):
    """Our diffusion and the diffusers scheduler with the same schedule and objective."""
    ours = GaussianDiffusion(make_betas(schedule, T), objective=objective)
    theirs = DDPMScheduler(
        num_train_timesteps=T,
        beta_schedule=DIFFUSERS_SCHEDULE[schedule],
        prediction_type=DIFFUSERS_PREDICTION[objective],
        clip_sample=clip,
        variance_type="fixed_small",
    )
    return ours, with_float64_alpha_bar(theirs, schedule)


def with_float64_alpha_bar(scheduler, schedule):
    """Let diffusers run its step formulas on float64 alpha_bar.

    diffusers keeps alpha_bar in float32 and forms beta_t = 1 - alpha_bar_t / alpha_bar_{t-1},
    which cancels catastrophically at small t (about 1e-4 relative error at t = 1 for the
    linear schedule). Its betas are checked against ours in test_schedules.py; here we compare
    the step algebra, so we hand it the cumulative product in float64.
    """
    scheduler.alphas_cumprod = torch.cumprod(1 - make_betas(schedule, T), 0)
    scheduler.one = torch.tensor(1.0, dtype=torch.float64)
    return scheduler


def randn(seed, shape=SHAPE):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def full_t(t, batch=SHAPE[0]):
    return torch.full((batch,), t, dtype=torch.long)


# ---- buffers ------------------------------------------------------------------------------------


def test_buffers_are_float32_non_persistent_and_consistent():
    d = GaussianDiffusion(make_betas("cosine", T))
    names = [
        "betas",
        "alphas",
        "alpha_bar",
        "alpha_bar_prev",
        "sqrt_alpha_bar",
        "sqrt_one_minus_alpha_bar",
        "beta_tilde",
        "posterior_log_variance_clipped",
        "posterior_mean_coef1",
        "posterior_mean_coef2",
        "loss_weights",
        "t_probs",
    ]
    buffers = dict(d.named_buffers())
    assert sorted(buffers) == sorted(names)
    assert all(b.dtype == torch.float32 and b.shape == (T,) for b in buffers.values())
    assert d.state_dict() == {}  # derived from config: never saved in checkpoints
    assert d.T == T
    assert d.alpha_bar_prev[0].item() == 1.0
    torch.testing.assert_close(d.alpha_bar_prev[1:], d.alpha_bar[:-1])
    torch.testing.assert_close(d.alpha_bar, torch.cumprod(d.alphas.double(), 0).float())
    assert d.beta_tilde[0].item() == 0.0
    assert d.posterior_log_variance_clipped[0].item() == pytest.approx(d.beta_tilde[1].log().item())
    torch.testing.assert_close(d.posterior_log_variance_clipped[1:], d.beta_tilde[1:].log())


def test_alpha_bar_equals_diffusers():
    for schedule in DIFFUSERS_SCHEDULE:
        ours = GaussianDiffusion(make_betas(schedule, T))
        theirs = DDPMScheduler(num_train_timesteps=T, beta_schedule=DIFFUSERS_SCHEDULE[schedule])
        torch.testing.assert_close(ours.alpha_bar, theirs.alphas_cumprod, rtol=1e-6, atol=1e-7)


# ---- forward process ----------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", DIFFUSERS_SCHEDULE)
def test_q_sample_equals_diffusers_add_noise(schedule):
    ours = GaussianDiffusion(make_betas(schedule, T))
    theirs = DDPMScheduler(num_train_timesteps=T, beta_schedule=DIFFUSERS_SCHEDULE[schedule])
    x0, noise = randn(0, (4, 1, 4, 4)), randn(1, (4, 1, 4, 4))
    t = torch.tensor([0, 7, 30, T - 1])
    torch.testing.assert_close(
        ours.q_sample(x0, t, noise), theirs.add_noise(x0, noise, t), rtol=1e-5, atol=1e-6
    )


def test_q_sample_has_the_closed_form_mean_and_variance():
    # q(x_t | x0) = N(sqrt(alpha_bar_t) x0, 1 - alpha_bar_t): 200k scalars per timestep.
    d = GaussianDiffusion(make_betas("linear", T))
    t = torch.tensor([0, 10, T - 1])
    x0 = torch.full((3, 1, 400, 500), 0.7)
    x_t = d.q_sample(x0, t, randn(2, x0.shape))
    mean, var = x_t.flatten(1).mean(1), x_t.flatten(1).var(1)
    alpha_bar = d.alpha_bar[t]
    n = x0[0].numel()
    # 6 standard errors: the tests fail only if the formula is wrong.
    torch.testing.assert_close(
        mean, alpha_bar.sqrt() * 0.7, rtol=0, atol=6 * ((1 - alpha_bar).max() / n).sqrt().item()
    )
    torch.testing.assert_close(var, 1 - alpha_bar, rtol=6 * (2 / n) ** 0.5, atol=0)


# ---- posterior and reverse step vs diffusers ------------------------------------------------------


@pytest.mark.parametrize("schedule", DIFFUSERS_SCHEDULE)
@pytest.mark.parametrize("t", TIMESTEPS)
def test_q_posterior_equals_diffusers(schedule, t):
    # With x0-prediction and no clipping, diffusers' step is q's posterior mean plus
    # sqrt(variance) z; z is reproduced from the same seed to recover diffusers' mean.
    ours, theirs = make_pair(schedule, objective="x0")
    x0, x_t = randn(3), randn(4)
    variance_ref = theirs._get_variance(t).float() if t > 0 else torch.tensor(0.0)
    z = randn(5) if t > 0 else torch.zeros(SHAPE)
    prev = theirs.step(x0, t, x_t, generator=torch.Generator().manual_seed(5)).prev_sample
    mean_ref = prev - variance_ref.sqrt() * z

    mean, variance = ours.q_posterior(x0, x_t, full_t(t))
    assert variance.shape == (SHAPE[0], 1, 1, 1)
    torch.testing.assert_close(mean, mean_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        variance.flatten(), variance_ref.expand(SHAPE[0]), rtol=1e-5, atol=1e-8
    )


@pytest.mark.parametrize("schedule", DIFFUSERS_SCHEDULE)
@pytest.mark.parametrize("objective", DIFFUSERS_PREDICTION)  # diffusers' DDPM has no flow
@pytest.mark.parametrize("clip", [False, True])
def test_ddpm_step_equals_diffusers(schedule, objective, clip):
    ours, theirs = make_pair(schedule, objective, clip)
    for t in TIMESTEPS:
        # scale 2: the predicted x0 often leaves [-1, 1], so clipping is exercised.
        model_output, x_t = 2 * randn(10 + t), randn(100 + t)
        ref = theirs.step(model_output, t, x_t, generator=torch.Generator().manual_seed(t))
        noise = randn(t)  # the z diffusers draws from the same seed
        got = ours.ddpm_step(model_output, x_t, full_t(t), noise, clip_x0=clip)
        torch.testing.assert_close(got, ref.prev_sample, rtol=1e-5, atol=1e-5)
        _, _, x0_pred = ours.p_mean_variance(model_output, x_t, full_t(t), clip_x0=clip)
        torch.testing.assert_close(x0_pred, ref.pred_original_sample, rtol=1e-5, atol=1e-5)


def test_ddpm_step_fixed_large_equals_diffusers():
    ours, _ = make_pair("linear")
    theirs = DDPMScheduler(num_train_timesteps=T, clip_sample=False, variance_type="fixed_large")
    theirs = with_float64_alpha_bar(theirs, "linear")
    t = 20
    model_output, x_t = randn(6), randn(7)
    ref = theirs.step(model_output, t, x_t, generator=torch.Generator().manual_seed(8)).prev_sample
    got = ours.ddpm_step(model_output, x_t, t, randn(8), clip_x0=False, sigma="beta")
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


# ---- seed formulas ------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", DIFFUSERS_SCHEDULE)
def test_mean_is_the_seeds_mu_tilde(schedule):
    # mu_tilde_t = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps)
    d = GaussianDiffusion(make_betas(schedule, T))
    t = torch.tensor([0, 1, 25, T - 1])
    x_t, eps = randn(0, (4, 1, 4, 4)), randn(1, (4, 1, 4, 4))
    alpha, beta, alpha_bar = (v[t].view(-1, 1, 1, 1) for v in (d.alphas, d.betas, d.alpha_bar))
    mu_tilde = (x_t - beta / (1 - alpha_bar).sqrt() * eps) / alpha.sqrt()

    mean, variance, _ = d.p_mean_variance(eps, x_t, t, clip_x0=False)
    torch.testing.assert_close(mean, mu_tilde, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(variance.flatten(), d.beta_tilde[t])
    _, variance_beta, _ = d.p_mean_variance(eps, x_t, t, clip_x0=False, sigma="beta")
    torch.testing.assert_close(variance_beta.flatten(), d.betas[t])


def test_ddpm_step_adds_noise_only_where_t_is_positive():
    d = GaussianDiffusion(make_betas("linear", T))
    t = torch.tensor([0, 5, 0, T - 1])
    model_output, x_t, noise = (
        randn(0, (4, 1, 4, 4)),
        randn(1, (4, 1, 4, 4)),
        randn(2, (4, 1, 4, 4)),
    )
    mean, variance, _ = d.p_mean_variance(model_output, x_t, t)
    got = d.ddpm_step(model_output, x_t, t, noise)
    torch.testing.assert_close(got, mean + (t > 0).view(-1, 1, 1, 1) * variance.sqrt() * noise)
    assert torch.equal(got[[0, 2]], mean[[0, 2]])
    assert not torch.allclose(got[[1, 3]], mean[[1, 3]])
    assert torch.equal(d.ddpm_step(model_output, x_t, t, None), mean)
    # with sigma="beta" the variance at t = 0 is beta_0 > 0: only the mask keeps z out
    mean_beta, _, _ = d.p_mean_variance(model_output, x_t, t, sigma="beta")
    got_beta = d.ddpm_step(model_output, x_t, t, noise, sigma="beta")
    assert torch.equal(got_beta[[0, 2]], mean_beta[[0, 2]])
    # an int timestep is the same as a full tensor of it
    torch.testing.assert_close(
        d.ddpm_step(model_output, x_t, 5, noise),
        d.ddpm_step(model_output, x_t, full_t(5, 4), noise),
    )


# ---- conversions and losses ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_eps_x0_v_round_trip(dtype):
    d = GaussianDiffusion(make_betas("cosine", T)).to(dtype)
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else {"rtol": 1e-6, "atol": 1e-6}
    t = torch.tensor([0, 3, 25, T - 1])
    x0, eps = randn(0, (4, 1, 4, 4)).to(dtype), randn(1, (4, 1, 4, 4)).to(dtype)
    x_t = d.q_sample(x0, t, eps)
    assert x_t.dtype == dtype
    torch.testing.assert_close(d.predict_eps_from_x0(x_t, t, x0), eps, **tol)
    for objective in OBJECTIVES:
        d.objective = objective
        x0_pred, eps_pred = d.model_to_x0_eps(d.target(x0, t, eps), x_t, t)
        torch.testing.assert_close(x0_pred, x0, **tol)
        torch.testing.assert_close(eps_pred, eps, **tol)


def test_v_target_is_salimans_and_ho():
    d = GaussianDiffusion(make_betas("linear", T), objective="v")
    t = torch.tensor([4, 40])
    x0, eps = randn(0, (2, 1, 2, 2)), randn(1, (2, 1, 2, 2))
    a, s = d.alpha_bar[t].sqrt().view(-1, 1, 1, 1), (1 - d.alpha_bar[t]).sqrt().view(-1, 1, 1, 1)
    torch.testing.assert_close(d.target(x0, t, eps), a * eps - s * x0)


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("loss", LOSSES)
def test_loss_is_zero_at_the_target_and_exact_off_it(objective, loss):
    d = GaussianDiffusion(make_betas("linear", T), objective=objective, loss=loss)
    t = torch.tensor([0, 10, T - 1])
    x0, noise = randn(0), randn(1)
    target = d.target(x0, t, noise)
    assert d.loss_per_sample(target, x0, t, noise).shape == (3,)
    assert torch.equal(d.loss_per_sample(target, x0, t, noise), torch.zeros(3))
    # off by 0.5 in sample 0 and by 2 in sample 2: l1 0.5 / 2, l2 0.25 / 4,
    # huber (delta 1) 0.5 * 0.5^2 = 0.125 / 1 * (2 - 0.5) = 1.5
    offset = torch.tensor([0.5, 0.0, -2.0]).view(-1, 1, 1, 1)
    expected = {"l1": [0.5, 0, 2], "l2": [0.25, 0, 4], "huber": [0.125, 0, 1.5]}[loss]
    torch.testing.assert_close(
        d.loss_per_sample(target + offset, x0, t, noise), torch.tensor(expected)
    )


def test_targets_per_objective():
    t = torch.tensor([0, 10, T - 1])
    x0, noise = randn(0), randn(1)
    eps = GaussianDiffusion(make_betas("linear", T), objective="eps")
    assert torch.equal(eps.target(x0, t, noise), noise)
    assert torch.equal(
        GaussianDiffusion(make_betas("linear", T), objective="x0").target(x0, t, noise), x0
    )
    v = GaussianDiffusion(make_betas("linear", T), objective="v")
    a, s = v.sqrt_alpha_bar[t].view(-1, 1, 1, 1), v.sqrt_one_minus_alpha_bar[t].view(-1, 1, 1, 1)
    torch.testing.assert_close(v.target(x0, t, noise), a * noise - s * x0)


def test_sample_timesteps_are_uniform_over_0_to_T():
    d = GaussianDiffusion(make_betas("linear", 10))
    t = d.sample_timesteps(2000, "cpu", generator=torch.Generator().manual_seed(0))
    assert t.dtype == torch.long and t.shape == (2000,)
    counts = torch.bincount(t, minlength=10)
    assert counts.shape == (10,)  # nothing at or above T
    assert counts.min() > 140 and counts.max() < 260  # 200 expected per value
    again = d.sample_timesteps(2000, "cpu", generator=torch.Generator().manual_seed(0))
    assert torch.equal(t, again)


# ---- user errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"objective": "noise"}, "diffusion.objective"),
        ({"loss": "l3"}, "diffusion.loss"),
        ({"loss": "huber", "huber_delta": 0.0}, "diffusion.huber_delta"),
    ],
)
def test_bad_config_raises_one_line_user_error(kwargs, key):
    with pytest.raises(UserError, match=key.replace(".", r"\.")) as excinfo:
        GaussianDiffusion(make_betas("linear", T), **kwargs)
    assert "\n" not in str(excinfo.value)


def test_bad_betas_and_sigma_raise_user_error():
    with pytest.raises(UserError, match="diffusion.schedule"):
        GaussianDiffusion(torch.tensor([0.1, 1.0]))
    d = GaussianDiffusion(make_betas("linear", T))
    with pytest.raises(UserError, match=r"sampler\.sigma"):
        d.p_mean_variance(randn(0), randn(1), full_t(3), sigma="large")
    with pytest.raises(UserError, match=r"diffusion\.objective"):
        d.objective = "score"  # refused when set, and the diffusion keeps its objective
    assert d.objective == "eps"
    d.p_mean_variance(randn(0), randn(1), full_t(3))
