"""The training distribution of t (diffusion.t_sampling): uniform, or EDM's lognormal in sigma."""

from __future__ import annotations

import math

import pytest
import torch

from catdiff.diffusion.build import build_diffusion
from catdiff.errors import UserError


def _sigma(diffusion) -> torch.Tensor:
    alpha_bar = diffusion.alpha_bar.double()
    return ((1 - alpha_bar) / alpha_bar).sqrt()


def test_lognormal_draws_log_sigma_from_the_configured_normal() -> None:
    diffusion = build_diffusion(
        "cosine", T=1000, objective="v", t_sampling="lognormal", t_p_mean=-1.2, t_p_std=1.2
    )
    t = diffusion.sample_timesteps(200_000, "cpu", generator=torch.Generator().manual_seed(0))
    assert t.dtype == torch.long and int(t.min()) >= 0 and int(t.max()) < 1000
    log_sigma = _sigma(diffusion)[t].log()
    # the grid is fine enough that the drawn log sigma_t has the normal's mean and std
    assert abs(log_sigma.mean().item() - -1.2) < 0.02
    assert abs(log_sigma.std().item() - 1.2) < 0.02
    # and its quantiles: a quarter of the draws lie below p_mean - 0.674 p_std
    below = (log_sigma < -1.2 - 0.6745 * 1.2).double().mean().item()
    assert abs(below - 0.25) < 0.01


def test_lognormal_follows_the_noise_level_not_the_schedule() -> None:
    """The same p_mean puts the median t where sigma_t = exp(p_mean), on any schedule."""
    for schedule in ("linear", "cosine"):
        diffusion = build_diffusion(schedule, T=1000, t_sampling="lognormal", t_p_mean=0.0)
        median_t = int((diffusion.t_probs.double().cumsum(0) < 0.5).sum())
        assert _sigma(diffusion)[median_t].item() == pytest.approx(1.0, rel=0.05)


def test_probabilities_sum_to_one_and_uniform_keeps_the_seed_draws() -> None:
    lognormal = build_diffusion("cosine", T=50, t_sampling="lognormal")
    assert lognormal.t_probs.double().sum().item() == pytest.approx(1.0, abs=1e-6)
    assert (lognormal.t_probs >= 0).all()
    # the tails go to the ends of the grid instead of being lost
    assert lognormal.t_probs[0] > 0 and lognormal.t_probs[-1] > 0

    uniform = build_diffusion("cosine", T=50)
    assert torch.allclose(uniform.t_probs, torch.full((50,), 1 / 50))
    drawn = uniform.sample_timesteps(16, "cpu", generator=torch.Generator().manual_seed(3))
    expected = torch.randint(0, 50, (16,), generator=torch.Generator().manual_seed(3))
    assert torch.equal(drawn, expected)


def test_lognormal_is_reproducible_per_generator() -> None:
    diffusion = build_diffusion("cosine", T=100, t_sampling="lognormal")

    def draw(seed: int) -> torch.Tensor:
        return diffusion.sample_timesteps(64, "cpu", generator=torch.Generator().manual_seed(seed))

    assert torch.equal(draw(1), draw(1))
    assert not torch.equal(draw(1), draw(2))


def test_bad_t_sampling_names_the_config_key() -> None:
    with pytest.raises(UserError, match="diffusion.t_sampling"):
        build_diffusion(t_sampling="logistic")
    with pytest.raises(UserError, match="diffusion.t_p_std"):
        build_diffusion(t_sampling="lognormal", t_p_std=0.0)
    with pytest.raises(UserError, match="diffusion.t_p_std"):
        build_diffusion(t_sampling="lognormal", t_p_std=math.nan)
