"""Min-SNR-gamma loss weighting (diffusion.loss_weight=min_snr)."""

from __future__ import annotations

import pytest
import torch

from catdiff.diffusion.build import build_diffusion
from catdiff.diffusion.gaussian import min_snr_weight
from catdiff.errors import UserError


def test_min_snr_is_one_weighting_read_in_each_objective() -> None:
    snr = torch.tensor([0.01, 0.5, 5.0, 100.0], dtype=torch.float64)
    x0 = min_snr_weight(snr, "x0", 5.0)
    assert torch.allclose(x0, torch.tensor([0.01, 0.5, 5.0, 5.0], dtype=torch.float64))
    # an eps error is an x0 error times sqrt(SNR); a v error one times sqrt(SNR + 1)
    assert torch.allclose(min_snr_weight(snr, "eps", 5.0) * snr, x0)
    assert torch.allclose(min_snr_weight(snr, "v", 5.0) * (snr + 1), x0)
    # below gamma, eps-prediction keeps the plain loss
    assert torch.allclose(min_snr_weight(snr[:3], "eps", 5.0), torch.ones(3, dtype=torch.float64))


def test_loss_per_sample_applies_the_weight_of_each_timestep() -> None:
    plain = build_diffusion("cosine", T=100, objective="v", loss="l2")
    weighted = build_diffusion("cosine", T=100, objective="v", loss="l2", loss_weight="min_snr")
    x0 = torch.rand(4, 1, 8, 8) * 2 - 1
    noise = torch.randn_like(x0)
    t = torch.tensor([0, 10, 50, 99])
    output = torch.randn_like(x0)
    ratio = weighted.loss_per_sample(output, x0, t, noise) / plain.loss_per_sample(
        output, x0, t, noise
    )
    snr = weighted.alpha_bar[t] / (1 - weighted.alpha_bar[t])
    assert torch.allclose(ratio, snr.clamp(max=5.0) / (snr + 1), rtol=1e-3)
    # t=0 is almost noise-free (SNR ~1600): capped at gamma, its weight is ~5/1600
    assert ratio[0] < 0.01 and ratio[1] > 0.1


def test_unknown_loss_weight_names_the_config_key() -> None:
    with pytest.raises(UserError, match="diffusion.loss_weight"):
        build_diffusion(loss_weight="snr")
    with pytest.raises(UserError, match="diffusion.min_snr_gamma"):
        build_diffusion(loss_weight="min_snr", min_snr_gamma=0)
