"""NLL in bits/dim from the variational bound: hand-computed terms, unbiasedness, training."""

import math

import mpmath
import pytest
import torch

from catdiff.data.synthetic import synthetic_cats
from catdiff.diffusion import GaussianDiffusion, make_betas
from catdiff.errors import UserError
from catdiff.metrics.nll import (
    NLLResult,
    discretized_gaussian_log_likelihood,
    gaussian_kl,
    nats_to_bpd,
    nll_bpd,
    p_log_variance,
    prior_nats,
    vb_terms,
)
from catdiff.models.unet import UNet

HALF_BIN = 1 / 255


def tiny_unet(seed=0):
    torch.manual_seed(seed)
    return UNet(
        image_size=8,
        in_channels=1,
        base_channels=8,
        channel_mults=(1, 2),
        num_res_blocks=1,
        attention_levels=(),
        norm_groups=4,
    )


def constant_model(value):
    """A 'network' that outputs ``value`` everywhere (read as x0 by an x0-objective diffusion)."""
    return lambda x_t, t: torch.full_like(x_t, value)


def Phi(z):
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


# ---- hand-computed pieces ------------------------------------------------------------------


def test_gaussian_kl_matches_closed_form_and_torch():
    # KL(N(1, 2) || N(0, 1)) = 0.5 (log(1/2) + 2 + 1 - 1) = 0.5 (2 - ln 2)
    kl = gaussian_kl(
        torch.tensor(1.0), torch.tensor(math.log(2.0)), torch.tensor(0.0), torch.tensor(0.0)
    )
    assert kl.item() == pytest.approx(0.5 * (2 - math.log(2)), rel=1e-6)
    m1, m2 = torch.tensor([0.3, -1.0]), torch.tensor([0.1, 0.5])
    v1, v2 = torch.tensor([0.5, 2.0]), torch.tensor([1.5, 0.2])
    oracle = torch.distributions.kl_divergence(
        torch.distributions.Normal(m1, v1.sqrt()), torch.distributions.Normal(m2, v2.sqrt())
    )
    torch.testing.assert_close(gaussian_kl(m1, v1.log(), m2, v2.log()), oracle)


def test_nats_to_bpd_by_hand():
    # 1000 nats on a 28x28 grayscale image: 1000 / (784 * 0.693147) = 1000 / 543.427 = 1.84017
    assert nats_to_bpd(1000.0, 784) == pytest.approx(1.840172, abs=1e-6)
    assert nats_to_bpd(784 * math.log(2) * 3, 784) == pytest.approx(3.0)


def test_prior_nats_closed_form():
    # betas (0.5, 0.5): alpha_bar_{T-1} = 0.25; per dim KL(N(0.5 x0, 0.75) || N(0, 1))
    #   = 0.5 (-log 0.75 + 0.75 - 1 + 0.25 x0^2); D = 4.
    diffusion = GaussianDiffusion(torch.tensor([0.5, 0.5]))
    x0 = torch.stack([torch.zeros(1, 2, 2), torch.full((1, 2, 2), -1.0)])
    per_dim_zero = 0.5 * (-math.log(0.75) - 0.25)  # 0.0188410
    assert per_dim_zero == pytest.approx(0.0188410, abs=1e-7)
    expected = [4 * per_dim_zero, 4 * (per_dim_zero + 0.5 * 0.25)]
    assert prior_nats(diffusion, x0).tolist() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("sigma", ["beta", "beta_tilde"])
def test_kl_term_by_hand(sigma):
    # betas (0.1, 0.2, 0.3), t = 2: alpha_bar = (0.9, 0.72, 0.504).
    diffusion = GaussianDiffusion(torch.tensor([0.1, 0.2, 0.3]), objective="x0")
    x0 = torch.tensor([0.5, -0.25, 1.0, 0.0]).reshape(1, 1, 2, 2)
    noise = torch.randn(1, 1, 2, 2, generator=torch.Generator().manual_seed(3))
    nats = vb_terms(constant_model(0.0), diffusion, x0, torch.tensor([2]), noise, sigma=sigma)
    beta_tilde = (1 - 0.72) / (1 - 0.504) * 0.3
    coef1 = math.sqrt(0.72) * 0.3 / (1 - 0.504)
    var_p = 0.3 if sigma == "beta" else beta_tilde
    # the x_t parts of both means cancel: mu_tilde - mu_theta = coef1 (x0 - 0)
    per_dim = [
        0.5 * (-1 + math.log(var_p / beta_tilde) + beta_tilde / var_p + (coef1 * x) ** 2 / var_p)
        for x in x0.flatten().tolist()
    ]
    assert nats.item() == pytest.approx(sum(per_dim), rel=1e-5)


def test_p_variance_conventions():
    betas = make_betas("linear", 10)
    diffusion = GaussianDiffusion(betas)
    t = torch.arange(10)
    large = p_log_variance(diffusion, t, "beta").exp()
    small = p_log_variance(diffusion, t, "beta_tilde").exp()
    # fixedlarge: beta_t, except beta_0 -> beta_tilde_1 (as the decoder of fixedsmall)
    torch.testing.assert_close(large[1:], diffusion.betas[1:])
    torch.testing.assert_close(large[0], diffusion.beta_tilde[1])
    torch.testing.assert_close(small[1:], diffusion.beta_tilde[1:])
    torch.testing.assert_close(small[0], diffusion.beta_tilde[1])
    one_step = GaussianDiffusion(torch.tensor([0.3]))  # no beta_tilde_1: beta_0 stands in
    for sigma in ("beta", "beta_tilde"):
        assert p_log_variance(one_step, torch.tensor([0]), sigma).exp().item() == pytest.approx(0.3)


def decoder_diffusion(variance):
    """Two steps, x0 objective, with beta_tilde_1 = variance (the decoder's variance):
    beta_tilde_1 = beta_0 beta_1 / (1 - (1 - beta_0)(1 - beta_1)) with beta_0 = beta_1 = b."""
    b = 2 * variance / (1 + variance)  # solves b^2 / (2b - b^2) = variance
    diffusion = GaussianDiffusion(torch.tensor([b, b], dtype=torch.float64), objective="x0")
    assert diffusion.beta_tilde[1].item() == pytest.approx(variance, rel=1e-5)
    return diffusion


def decoder_nats(diffusion, x0, mean):
    """L_0 for an x0 model that outputs ``mean``: at t = 0 p's mean is x0_pred itself."""
    t = torch.zeros(x0.shape[0], dtype=torch.long)
    return vb_terms(lambda x_t, t: mean, diffusion, x0, t, torch.zeros_like(x0))


def test_decoder_exact_mean_tiny_variance_is_free():
    diffusion = decoder_diffusion(1e-7)  # std 3.2e-4, bin half-width 3.9e-3 = 12 std
    levels = torch.tensor([0, 1, 77, 128, 254, 255], dtype=torch.float64)
    x0 = (levels / 127.5 - 1).reshape(1, 1, 2, 3)
    assert decoder_nats(diffusion, x0, x0).item() == pytest.approx(0.0, abs=1e-9)


def test_decoder_between_bins_and_at_edges():
    std = 0.004
    diffusion = decoder_diffusion(std**2)
    levels = torch.tensor([0, 100, 255], dtype=torch.float64)
    x0 = (levels / 127.5 - 1).reshape(1, 1, 1, 3)
    shift = 0.5 / 255  # the mean halfway between the level and the upper bin edge
    nats = decoder_nats(diffusion, x0, x0 + shift).item()
    a, b = (-HALF_BIN - shift) / std, (HALF_BIN - shift) / std
    interior = -math.log(Phi(b) - Phi(a))
    left = -math.log(Phi(b))  # level 0: (-inf, -1 + 1/255]
    right = -math.log(1 - Phi(a))  # level 255: [1 - 1/255, inf)
    assert nats == pytest.approx(interior + left + right, rel=1e-5)


def test_decoder_far_tail_is_exact_not_clamped():
    # 40 standard deviations away: log-CDF differences, no 1e-12 floor (which would give 27.6).
    std = 0.01
    x0 = torch.tensor([[0.2]], dtype=torch.float64)
    mean = x0 + 40 * std
    got = -discretized_gaussian_log_likelihood(
        x0, mean, torch.tensor(math.log(std), dtype=torch.float64)
    ).item()
    a, b = (-HALF_BIN - 40 * std) / std, (HALF_BIN - 40 * std) / std
    mpmath.mp.dps = 50
    expected = -float(mpmath.log(mpmath.ncdf(b) - mpmath.ncdf(a)))
    assert got == pytest.approx(expected, rel=1e-9)
    assert got > 700


# ---- the estimator -------------------------------------------------------------------------


def oracle_x0_model(x0_value):
    return lambda x_t, t: x0_value.expand_as(x_t)


def test_perfect_model_full_sum_by_hand():
    # One image and an x0 model that returns it: every L_t is just the variance mismatch
    # 0.5 (-1 + log(beta_t / beta_tilde_t) + beta_tilde_t / beta_t) per dim.
    betas = make_betas("linear", 12, beta_start=0.01, beta_end=0.3)
    diffusion = GaussianDiffusion(betas, objective="x0")
    images = torch.tensor([[[[0, 64], [128, 255]]]], dtype=torch.uint8)
    x0 = images.double() / 127.5 - 1
    result = nll_bpd(oracle_x0_model(x0.float()), diffusion, images, mode="full", progress=False)
    b, bt = betas[1:], diffusion.beta_tilde[1:].double()
    sum_l_t = 4 * (0.5 * (-1 + (b / bt).log() + bt / b)).sum().item()
    prior = prior_nats(diffusion, x0).item()
    assert result.terms["sum_L_t"] == pytest.approx(nats_to_bpd(sum_l_t, 4), rel=1e-5)
    # (nll_bpd scales the pixels in float32, as for the network: 1e-8 relative)
    assert result.terms["prior"] == pytest.approx(nats_to_bpd(prior, 4), rel=1e-6)
    assert sum(result.terms.values()) == pytest.approx(result.bpd, rel=1e-12)
    assert result.timesteps_per_image == 12 and result.sigma == "beta"
    small = nll_bpd(
        oracle_x0_model(x0.float()),
        diffusion,
        images,
        mode="full",
        sigma="beta_tilde",
        progress=False,
    )
    assert small.terms["sum_L_t"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("k", [3, 5])
def test_sampled_estimate_is_unbiased(k):
    # With the perfect x0 model every L_t is deterministic and varies ~10x over t, so the only
    # noise is the timestep draw: the mean over many images and seeds must hit the full sum.
    # (Equal weights instead of the stratum sizes, or a stratum missing t = T-1, fail by > 5 se.)
    diffusion = GaussianDiffusion(make_betas("linear", 20, beta_start=1e-3, beta_end=0.25), "x0")
    images = torch.tensor([[[[0, 64], [128, 255]]]], dtype=torch.uint8).repeat(4096, 1, 1, 1)
    model = oracle_x0_model(images[:1].float() / 127.5 - 1)
    full = nll_bpd(model, diffusion, images[:1], mode="full", progress=False)
    runs = [
        nll_bpd(
            model, diffusion, images, timesteps_per_image=k, batch_size=8192, seed=s, progress=False
        )
        for s in range(8)
    ]
    mean = sum(r.bpd for r in runs) / len(runs)
    se = math.sqrt(sum(r.se**2 for r in runs)) / len(runs)
    assert 0 < se < 0.02
    assert abs(mean - full.bpd) < 4 * se
    assert runs[0].timesteps_per_image == k


def test_sampled_with_k_at_least_T_minus_1_is_the_full_sum():
    diffusion = GaussianDiffusion(make_betas("linear", 6, beta_end=0.3), "x0")
    images = torch.tensor([[[[0, 64], [128, 255]]]], dtype=torch.uint8).repeat(3, 1, 1, 1)
    model = oracle_x0_model(images[:1].float() / 127.5 - 1)
    full = nll_bpd(model, diffusion, images, mode="full", progress=False)
    capped = nll_bpd(model, diffusion, images, timesteps_per_image=50, progress=False)
    assert capped.bpd == pytest.approx(full.bpd, rel=1e-12)
    assert capped.timesteps_per_image == 5


def test_sampled_agrees_with_full_on_a_network():
    # A real (random) UNet: each term also depends on the x_t noise; batches mix timesteps.
    diffusion = GaussianDiffusion(make_betas("linear", 20, beta_start=1e-3, beta_end=0.25))
    model = tiny_unet()
    torch.nn.init.normal_(model.conv_out.weight, std=0.05)  # zero-init would predict eps = 0
    images = synthetic_cats(32, image_size=8, seed=1)
    full = [
        nll_bpd(model, diffusion, images, mode="full", seed=s, progress=False) for s in range(2)
    ]
    sampled = [
        nll_bpd(
            model, diffusion, images, timesteps_per_image=3, batch_size=50, seed=s, progress=False
        )
        for s in range(10, 30)
    ]
    full_mean = sum(r.bpd for r in full) / len(full)
    sampled_mean = sum(r.bpd for r in sampled) / len(sampled)
    # The same images in every run, so these se (which include the image spread) are generous.
    se_full = max(r.se for r in full) / math.sqrt(len(full))
    se_sampled = max(r.se for r in sampled) / math.sqrt(len(sampled))
    assert abs(sampled_mean - full_mean) < 3 * math.hypot(se_full, se_sampled)
    assert sampled_mean == pytest.approx(full_mean, rel=0.05)
    assert sampled[0].terms["prior"] == pytest.approx(full[0].terms["prior"])


def test_trained_model_has_lower_finite_nll():
    torch.manual_seed(0)
    diffusion = GaussianDiffusion(make_betas("cosine", 30), objective="eps")
    model = tiny_unet()
    images = synthetic_cats(64, image_size=8, seed=2)
    kwargs = dict(mode="sampled", timesteps_per_image=8, seed=0, progress=False)
    before = nll_bpd(model, diffusion, images, **kwargs)
    x0_all = images.float() / 127.5 - 1
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(40):
        x0 = x0_all[torch.randint(0, 64, (16,), generator=gen)]
        t = diffusion.sample_timesteps(16, "cpu", gen)
        noise = torch.randn(x0.shape, generator=gen)
        loss = ((model(diffusion.q_sample(x0, t, noise), t) - noise) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = nll_bpd(model, diffusion, images, **kwargs)
    assert math.isfinite(after.bpd) and math.isfinite(after.se)
    # Same seed: the same timesteps and noise in both runs, so the comparison is paired.
    assert after.bpd < before.bpd / 3
    assert model.training  # restored after the evaluation


def test_seeded_reproducibility():
    diffusion = GaussianDiffusion(make_betas("linear", 16, beta_end=0.2))
    model = tiny_unet()
    torch.nn.init.normal_(model.conv_out.weight, std=0.05)
    images = synthetic_cats(10, image_size=8)

    def run(seed):
        return nll_bpd(
            model, diffusion, images, timesteps_per_image=4, batch_size=7, seed=seed, progress=False
        )

    first, second, other = run(5), run(5), run(6)
    assert first.bpd == second.bpd and first.terms == second.terms
    assert other.bpd != first.bpd
    d = first.to_dict()
    assert isinstance(first, NLLResult)
    assert (
        d["mode"] == "sampled"
        and d["n_images"] == 10
        and set(d["terms"]) == {"prior", "decoder", "sum_L_t"}
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(images=torch.zeros(2, 1, 8, 8)), "uint8"),
        (dict(images=torch.zeros(2, 1, 16, 16, dtype=torch.uint8)), "model expects"),
        (dict(images=torch.zeros(1, 8, 8, dtype=torch.uint8)), r"\(N, C, H, W\)"),
        (dict(mode="exact"), "nll.mode"),
        (dict(timesteps_per_image=0), "nll.timesteps"),
        (dict(timesteps_per_image=2.5), "nll.timesteps"),
        (dict(sigma="learned"), "nll.sigma"),
        (dict(batch_size=0), "nll.batch_size"),
    ],
)
def test_bad_inputs_raise_user_error(kwargs, match):
    images = kwargs.pop("images", torch.zeros(2, 1, 8, 8, dtype=torch.uint8))
    diffusion = GaussianDiffusion(make_betas("linear", 4))
    with pytest.raises(UserError, match=match) as info:
        nll_bpd(tiny_unet(), diffusion, images, progress=False, **kwargs)
    assert "\n" not in str(info.value)
