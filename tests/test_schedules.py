"""Variance schedules against diffusers' DDPMScheduler (an independent implementation)."""

import math

import pytest
import torch
from diffusers import DDPMScheduler

from catdiff.diffusion import SCHEDULES, make_betas
from catdiff.errors import UserError

# our name -> diffusers' beta_schedule
DIFFUSERS_NAME = {
    "linear": "linear",
    "cosine": "squaredcos_cap_v2",
    "quadratic": "scaled_linear",
    "sigmoid": "sigmoid",
}


@pytest.mark.parametrize("name", DIFFUSERS_NAME)  # rectified_flow: tests/test_flow.py
@pytest.mark.parametrize("T", [10, 1000])
def test_betas_equal_diffusers(name, T):
    ours = make_betas(name, T)
    theirs = DDPMScheduler(num_train_timesteps=T, beta_schedule=DIFFUSERS_NAME[name]).betas
    assert ours.dtype == torch.float64
    assert ours.shape == (T,)
    # diffusers keeps float32, so agreement is to float32 precision.
    torch.testing.assert_close(ours.float(), theirs, rtol=1e-6, atol=1e-8)


def test_linear_is_the_seed_default():
    betas = make_betas("linear", 1000)
    assert betas[0].item() == pytest.approx(1e-4)
    assert betas[-1].item() == pytest.approx(0.02)
    assert torch.all(betas[1:] > betas[:-1])


def test_cosine_alpha_bar_follows_the_squared_cosine():
    # Nichol & Dhariwal 2021: alpha_bar_t = f(t+1) / f(0), f(u) = cos^2((u/T + s)/(1 + s) pi/2).
    T, s = 50, 0.008
    alpha_bar = torch.cumprod(1 - make_betas("cosine", T), 0)

    def f(u):
        return math.cos((u / T + s) / (1 + s) * math.pi / 2) ** 2

    for t in [0, 10, 25, 40]:
        assert alpha_bar[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-9)
    assert make_betas("cosine", T).max().item() <= 0.999


def test_betas_honour_start_and_end():
    for name in ("linear", "quadratic"):
        betas = make_betas(name, 20, beta_start=1e-3, beta_end=0.05)
        assert betas[0].item() == pytest.approx(1e-3)
        assert betas[-1].item() == pytest.approx(0.05)
    sigmoid = make_betas("sigmoid", 20, beta_start=1e-3, beta_end=0.05)
    assert 1e-3 < sigmoid[0].item() < sigmoid[-1].item() < 0.05


def test_unknown_schedule_lists_the_valid_ones():
    with pytest.raises(UserError) as excinfo:
        make_betas("cosin", 10)
    message = str(excinfo.value)
    assert "diffusion.schedule" in message
    assert all(name in message for name in SCHEDULES)
    assert "\n" not in message


@pytest.mark.parametrize("T", [0, -5, 2.5])
def test_bad_T_names_the_key(T):
    with pytest.raises(UserError, match=r"diffusion\.T"):
        make_betas("linear", T)


def test_bad_beta_range_names_the_key():
    with pytest.raises(UserError, match=r"diffusion\.beta_end"):
        make_betas("linear", 10, beta_end=1.5)
    with pytest.raises(UserError, match=r"diffusion\.beta_start"):
        make_betas("linear", 10, beta_start=0.0)
