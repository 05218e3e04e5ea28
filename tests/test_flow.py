"""The flow-matching objective and the rectified-flow path: their maths against exact answers.

For Gaussian data x0 ~ N(mu, sd^2) per pixel the rectified-flow marginals are Gaussian,
x_r ~ N((1 - r) mu, (1 - r)^2 sd^2 + r^2), the probability-flow ODE is the affine map
x_r = m(r) + sqrt(v(r)) z, and its velocity is known in closed form: a sampler's images can be
compared with the exact solution from the same start.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest
import torch

from catdiff.diffusion import DDIMSampler, GaussianDiffusion, make_betas, sample
from catdiff.diffusion.gaussian import min_snr_weight
from catdiff.diffusion.heun import HeunSampler
from catdiff.diffusion.objectives import OBJECTIVES, make_objective
from catdiff.diffusion.timesteps import t_probabilities
from catdiff.errors import UserError
from tests.test_cli import FAST, run

MU, SD = 0.3, 0.5
SHAPE = (1, 8, 8)


def flow_coords(d: GaussianDiffusion, t: torch.Tensor, x_t: torch.Tensor):
    """(r, x_r): the flow time r = s / (a + s) and the point x_t / (a + s) on the straight path."""
    a = d.sqrt_alpha_bar[t].double().view(-1, 1, 1, 1)
    s = d.sqrt_one_minus_alpha_bar[t].double().view(-1, 1, 1, 1)
    return s / (a + s), x_t.double() / (a + s)


def gaussian_velocity(r: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """E[eps - x0 | x_r = x] for x0 ~ N(MU, SD^2): -MU + (r - (1 - r) SD^2) / v(r) (x - m(r))."""
    var = (1 - r) ** 2 * SD**2 + r**2
    return -MU + (r - (1 - r) * SD**2) / var * (x - (1 - r) * MU)


def oracle(d: GaussianDiffusion):
    """The exact flow network in catdiff's convention: sees x_t at timestep t, returns eps - x0."""

    def model(x_t, t):
        r, x = flow_coords(d, t, x_t)
        return gaussian_velocity(r, x).to(x_t.dtype)

    return model


def exact_images(d: GaussianDiffusion, x_start: torch.Tensor) -> torch.Tensor:
    """Where the ODE takes x_{T-1} = x_start: MU + SD z, z its standardised flow coordinate."""
    t = torch.full((x_start.shape[0],), d.T - 1)
    r, x = flow_coords(d, t, x_start)
    z = (x - (1 - r) * MU) / ((1 - r) ** 2 * SD**2 + r**2).sqrt()
    return MU + SD * z


def flow_diffusion(T: int = 1000) -> GaussianDiffusion:
    return GaussianDiffusion(make_betas("rectified_flow", T), objective="flow", loss="l2")


def test_rectified_flow_schedule_visits_evenly_spaced_flow_times():
    T = 1000
    d = flow_diffusion(T)
    t = torch.arange(T)
    r, _ = flow_coords(d, t, torch.zeros(T, 1, 1, 1))
    torch.testing.assert_close(r.flatten(), (t + 1).double() / (T + 1), rtol=0, atol=1e-6)


def test_the_flow_target_is_the_straight_paths_velocity():
    # d/dr of (1 - r) x0 + r eps is eps - x0, and the conversions read it back exactly.
    d = flow_diffusion(50)
    gen = torch.Generator().manual_seed(0)
    x0, eps = torch.randn((3, *SHAPE), generator=gen), torch.randn((3, *SHAPE), generator=gen)
    t = torch.tensor([0, 20, 49])
    x_t = d.q_sample(x0, t, eps)
    torch.testing.assert_close(d.target(x0, t, eps), eps - x0)
    x0_pred, eps_pred = d.model_to_x0_eps(eps - x0, x_t, t)
    torch.testing.assert_close(x0_pred, x0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(eps_pred, eps, rtol=1e-5, atol=1e-5)


def test_the_loss_minimiser_is_the_ode_velocity():
    # Least squares of the flow target on x_r over many draws at one t recovers the closed-form
    # velocity: training with this objective learns the ODE the samplers integrate.
    d = flow_diffusion(1000)
    gen = torch.Generator().manual_seed(1)
    n = 200_000
    x0 = MU + SD * torch.randn(n, generator=gen, dtype=torch.float64)
    eps = torch.randn(n, generator=gen, dtype=torch.float64)
    for step in (100, 500, 900):
        t = torch.full((n,), step)
        r, x = flow_coords(d, t, d.q_sample(x0.float(), t, eps.float()).view(n, 1, 1, 1))
        r, x = r.flatten(), x.flatten()
        target = eps - x0
        design = torch.stack([torch.ones_like(x), x], dim=1)
        coef = torch.linalg.lstsq(design, target.unsqueeze(1)).solution.flatten()
        exact = gaussian_velocity(r[:1], torch.tensor([0.0, 1.0], dtype=torch.float64))
        expected = torch.stack([exact[0], exact[1] - exact[0]])
        torch.testing.assert_close(coef, expected, atol=0.01, rtol=0)


def test_deterministic_ddim_is_eulers_method_in_flow_coordinates():
    # x_r' = x_r + (r' - r) u for every objective and schedule (why sampler=euler is DDIM).
    for schedule, objective in (("rectified_flow", "flow"), ("cosine", "v"), ("linear", "eps")):
        d = GaussianDiffusion(make_betas(schedule, 100), objective=objective)
        sampler = DDIMSampler(steps=1, clip_x0=False, rederive_eps=False)
        x_t = torch.randn((2, *SHAPE), generator=torch.Generator().manual_seed(2))
        t = torch.full((2,), 99)
        out = 0.7 * torch.tanh(x_t) - 0.1
        x0_pred, eps_pred = d.model_to_x0_eps(out, x_t, t)
        image = sample(sampler, lambda x, _, out=out: out, d, n=2, shape=SHAPE, seed=2).x0
        r, x = flow_coords(d, t, x_t)
        euler = x + (0 - r) * (eps_pred - x0_pred).double()  # r' = 0: the image, a + s = 1
        torch.testing.assert_close(image.double(), euler, rtol=1e-5, atol=1e-5)


def _error(sampler, d: GaussianDiffusion) -> float:
    result = sample(sampler, oracle(d), d, n=64, shape=SHAPE, seed=3, record=[d.T - 1])
    exact = exact_images(d, result.trajectory[d.T - 1])
    return float((result.x0.double() - exact).abs().max())


def test_euler_and_heun_converge_to_the_exact_ode_solution_at_their_orders():
    d = flow_diffusion(1000)
    euler = [
        _error(DDIMSampler(steps=n, clip_x0=False, rederive_eps=False), d) for n in (8, 16, 32)
    ]
    heun = [_error(HeunSampler(steps=n, clip_x0=False), d) for n in (4, 8, 16)]
    # first order: the error halves with twice the steps; second order: it quarters
    assert all(1.6 < a / b < 2.5 for a, b in zip(euler, euler[1:], strict=False)), euler
    assert all(a / b > 3.0 for a, b in zip(heun, heun[1:], strict=False)), heun
    # and they reach the exact images (data std 0.5; max over 4,096 pixels): 0.087 and 0.38 here
    assert euler[-1] < 0.1 and heun[-1] < 0.5


def test_logit_normal_times_are_sd3s_on_the_rectified_path():
    # logit(r) ~ N(0, 1): P(r < 1/2) = 1/2 and P(r < sigmoid(1)) = Phi(1) on the even r grid.
    T = 1000
    d = flow_diffusion(T)
    probs = t_probabilities(d.alpha_bar.double(), "logit_normal", 0.0, 1.0)
    r = (torch.arange(T) + 1).double() / (T + 1)
    assert abs(float(probs[r < 0.5].sum()) - 0.5) < 0.01
    phi1 = 0.5 * (1 + math.erf(1 / math.sqrt(2)))
    assert abs(float(probs[r < torch.sigmoid(torch.tensor(1.0))].sum()) - phi1) < 0.01


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_min_snr_weights_are_the_x0_weighting_for_every_objective(objective):
    # weight * |target error|^2 = min(SNR, gamma) * |x0 error|^2, whatever the objective.
    d = GaussianDiffusion(make_betas("cosine", 100), objective=objective)
    t = torch.tensor([5, 50, 95])
    x_t, out = torch.randn((3, *SHAPE)), torch.randn((3, *SHAPE))
    delta = 1e-2 * torch.randn((3, *SHAPE))
    x0_error = d.model_to_x0_eps(out + delta, x_t, t)[0] - d.model_to_x0_eps(out, x_t, t)[0]
    snr = (d.alpha_bar / (1 - d.alpha_bar))[t]
    weight = min_snr_weight(snr, objective, 5.0)
    lhs = weight * delta.square().sum(dim=(1, 2, 3))
    rhs = snr.clamp(max=5.0) * x0_error.square().sum(dim=(1, 2, 3))
    torch.testing.assert_close(lhs, rhs, rtol=1e-3, atol=0)


PLUGIN = textwrap.dedent(
    """
    class Score:
        # the score -eps / s, a new objective in one class
        def target(self, x0, eps, a, s):
            return -eps / s

        def to_x0_eps(self, out, x_t, a, s):
            eps = -out * s
            return (x_t - s * eps) / a, eps

        def x0_error_scale(self, snr):
            return snr * (1 + snr)

    class Incomplete:
        def target(self, x0, eps, a, s):
            return eps
    """
)


def test_a_new_objective_is_one_class_named_by_import_path(tmp_path: Path, monkeypatch):
    (tmp_path / "my_objectives.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    d = GaussianDiffusion(make_betas("linear", 50), objective="my_objectives.Score")
    x0, eps, t = torch.randn((2, *SHAPE)), torch.randn((2, *SHAPE)), torch.tensor([3, 30])
    x0_pred, eps_pred = d.model_to_x0_eps(d.target(x0, t, eps), d.q_sample(x0, t, eps), t)
    torch.testing.assert_close(eps_pred, eps, rtol=1e-4, atol=1e-4)
    assert float(d.loss_per_sample(d.target(x0, t, eps), x0, t, eps).abs().max()) == 0
    for bad, message in (("my_objectives.Incomplete", "lacks to_x0_eps"), ("score", "choose one")):
        with pytest.raises(UserError, match=message) as caught:
            make_objective(bad)
        assert "diffusion.objective" in str(caught.value) and "\n" not in str(caught.value)


def test_rectified_flow_trains_and_samples_from_the_command_line(tmp_path: Path):
    env = {"CATDIFF_OUTPUTS": str(tmp_path / "out")}
    run(["catdiff.train", *FAST, "diffusion=flow", "sampler=euler", "name=flow"], env=env)
    (config,) = (tmp_path / "out").glob("flow/*/config.yaml")
    text = config.read_text()
    assert "objective: flow" in text and "schedule: rectified_flow" in text
    assert "t_sampling: logit_normal" in text
    (ckpt,) = config.parent.glob("checkpoints/last.ckpt")
    out = tmp_path / "samples"
    proc = run(
        ["catdiff.sample", f"ckpt={ckpt}", "n=4", "sampler=euler", "steps=4", f"out={out}"],
        env=env,
    )
    assert "4 network evaluations each" in proc.stdout
    assert len(list((out / "images").glob("*.png"))) == 4
