"""Easy Consistency Tuning and multistep consistency sampling, against exact answers.

For Gaussian data x0 ~ N(MU, SD^2) per pixel the probability-flow ODE is affine, so the exact
consistency function (every point of a trajectory to its image) is known,
f*(x_t) = MU + SD (x_t - a MU) / sqrt(a^2 SD^2 + s^2), and so is the denoiser E[x0 | x_t],
which diffusion training learns and which is not f*.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from catdiff.diffusion import GaussianDiffusion, make_betas, sample
from catdiff.diffusion.consistency import ConsistencySampler, ConsistencyTuning
from catdiff.diffusion.heun import edm_sigmas
from catdiff.errors import UserError
from tests.test_cli import FAST, run

MU, SD = 0.3, 0.5
SHAPE = (1, 8, 8)


def _coefs(d, t, x):
    a = d.sqrt_alpha_bar[t].view(-1, 1, 1, 1).to(x.dtype)
    s = d.sqrt_one_minus_alpha_bar[t].view(-1, 1, 1, 1).to(x.dtype)
    return a, s


def consistency_fn(d):
    """The exact f* as an x0-predicting network."""

    def model(x_t, t):
        a, s = _coefs(d, t, x_t)
        return MU + SD * (x_t - a * MU) / (a**2 * SD**2 + s**2).sqrt()

    return model


def denoiser(d):
    """E[x0 | x_t], the optimum of diffusion training, as an x0-predicting network."""

    def model(x_t, t):
        a, s = _coefs(d, t, x_t)
        return MU + a * SD**2 / (a**2 * SD**2 + s**2) * (x_t - a * MU)

    return model


def diffusion() -> GaussianDiffusion:
    return GaussianDiffusion(make_betas("cosine", 1000), objective="x0")


def data(n: int, seed: int = 0) -> torch.Tensor:
    return MU + SD * torch.randn((n, *SHAPE), generator=torch.Generator().manual_seed(seed))


def test_one_step_with_the_exact_consistency_function_is_the_exact_ode_solution():
    d = diffusion()
    result = sample(
        ConsistencySampler(steps=1, clip_x0=False),
        consistency_fn(d),
        d,
        n=64,
        shape=SHAPE,
        seed=0,
        record=[999],
    )
    x_T = result.trajectory[999]
    a, s = _coefs(d, torch.full((64,), 999), x_T)
    torch.testing.assert_close(result.x0, MU + SD * (x_T - a * MU) / (a**2 * SD**2 + s**2).sqrt())


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_multistep_sampling_keeps_the_data_distribution(steps):
    # Re-noising an exact sample to a lower level and mapping it again stays exact in law.
    d = diffusion()
    sampler = ConsistencySampler(steps=steps, clip_x0=False)
    assert sampler.nfe(d) == steps and sampler.timesteps(d)[0] == 999
    x = sample(sampler, consistency_fn(d), d, n=256, shape=SHAPE, seed=1).x0  # 16,384 values
    assert abs(x.mean().item() - MU) < 4 * SD / 128
    assert abs(x.std().item() / SD - 1) < 0.03


def test_the_first_stage_is_denoising_and_later_stages_close_the_gap():
    d = diffusion()
    ect = ConsistencyTuning(stages=8)
    sigmas = edm_sigmas(d)
    gen = torch.Generator().manual_seed(2)
    t, r = ect.pairs(d, 4096, stage=0, device="cpu", generator=gen)
    assert bool((r == -1).all())  # stage 0: the target is the image itself, diffusion's loss
    for stage in (3, 7):
        t, r = ect.pairs(d, 4096, stage=stage, device="cpu", generator=gen)
        assert bool((r < t).all())
        kept = r >= 0
        ratio = sigmas[r[kept]] / sigmas[t[kept]]
        n = 1 + 8 * torch.sigmoid(-sigmas[t[kept]])
        # the nearest discrete sigma below: within the grid's spacing of 1 - n / 2^stage
        assert float((ratio - (1 - n / 2**stage)).abs().median()) < 0.05


def test_the_target_moves_from_the_denoiser_to_the_consistency_function():
    # With f* on the stop-gradient side, the best f(x_t) in L2 is E[f*(x_r) | x_t], linear in
    # y = x_t / a with slope SD (SD^2 + sigma_r sigma_t) / (sqrt(SD^2 + sigma_r^2) (SD^2 +
    # sigma_t^2)): the denoiser's SD^2 / (SD^2 + sigma_t^2) at sigma_r = 0 (stage 0), f*'s
    # SD / sqrt(SD^2 + sigma_t^2) as sigma_r -> sigma_t. Fitted on the pairs ECT draws.
    d, ect = diffusion(), ConsistencyTuning(stages=8)
    sigmas, f_star = edm_sigmas(d), consistency_fn(d)
    n = 100_000
    x0 = MU + SD * torch.randn((n, 1, 1, 1), generator=torch.Generator().manual_seed(4))
    eps = torch.randn((n, 1, 1, 1), generator=torch.Generator().manual_seed(5))
    for stage, slope_of in ((0, "denoiser"), (7, "f*")):
        t = torch.full((n,), 300)  # sigma_t ~ 0.5, where the two slopes differ most
        t_pairs, r_pairs = ect.pairs(d, 200_000, stage, "cpu", torch.Generator().manual_seed(7))
        r = torch.full((n,), int(r_pairs[t_pairs == 300].mode().values))  # ECT's r for t = 300
        x_t = d.q_sample(x0, t, eps).double()
        target = x0.double() if r[0] < 0 else f_star(d.q_sample(x0, r, eps), r).double()
        y = x_t / d.sqrt_alpha_bar[300].double()
        design = torch.cat([torch.ones_like(y.flatten()[:, None]), y.flatten()[:, None]], dim=1)
        slope = float(torch.linalg.lstsq(design, target.flatten()[:, None]).solution[1])
        sigma_t = float(sigmas[300])
        sigma_r = 0.0 if r[0] < 0 else float(sigmas[r[0]])
        expected = (
            SD * (SD**2 + sigma_r * sigma_t) / ((SD**2 + sigma_r**2) ** 0.5 * (SD**2 + sigma_t**2))
        )
        assert abs(slope - expected) < 0.01, (stage, slope, expected)
        named = (
            SD**2 / (SD**2 + sigma_t**2)
            if slope_of == "denoiser"
            else SD / (SD**2 + sigma_t**2) ** 0.5
        )
        assert abs(slope - named) < 0.02, (stage, slope, named)


def test_the_loss_is_ects_weighted_pseudo_huber(monkeypatch):
    d, ect = diffusion(), ConsistencyTuning()
    x0 = data(3)
    t, r = torch.tensor([100, 500, 900]), torch.tensor([-1, 450, 800])
    monkeypatch.setattr(ect, "pairs", lambda *args, **kwargs: (t, r))
    zero = lambda x, t: torch.zeros_like(x)  # noqa: E731 - f = 0 everywhere: distance ||x0||^2 or 0
    sigmas = edm_sigmas(d)
    c = 0.00054 * 8
    loss = ect.loss_per_sample(zero, d, x0, stage=3)
    first = (x0[0].square().sum() + c**2).sqrt() - c
    torch.testing.assert_close(
        loss, torch.stack([first / sigmas[100], torch.tensor(0.0), torch.tensor(0.0)]).float()
    )


def test_bad_options_are_one_line():
    for kwargs, key in (({"stages": 0}, "stages"), ({"q": 1.0}, "q")):
        with pytest.raises(UserError, match=f"module.consistency.{key}"):
            ConsistencyTuning(**kwargs)
    with pytest.raises(UserError, match="sampler.sigma_lo"):
        ConsistencySampler(sigma_lo=2.0, sigma_hi=1.0)


def test_few_step_tunes_a_teacher_from_the_command_line(tmp_path: Path):
    env = {"CATDIFF_OUTPUTS": str(tmp_path / "out")}
    teacher_args = ["name=teacher", "diffusion.objective=v", "diffusion.schedule=cosine"]
    run(["catdiff.train", *FAST, *teacher_args], env=env)
    (teacher,) = (tmp_path / "out").glob("teacher/*/checkpoints/last.ckpt")
    run(["catdiff.train", "experiment=few_step", *FAST, f"teacher={teacher}"], env=env)
    (config,) = (tmp_path / "out").glob("few_step/*/config.yaml")
    assert "objective: v" in config.read_text()  # the teacher's diffusion, adopted
    assert "schedule: cosine" in config.read_text()
    ckpt = config.parent / "checkpoints" / "last.ckpt"
    for steps in (1, 2, 4):
        proc = run(
            [
                "catdiff.sample",
                f"ckpt={ckpt}",
                "n=4",
                f"steps={steps}",
                "sampler=consistency",
                f"out={tmp_path / str(steps)}",
            ],
            env=env,
        )
        assert f"{steps} network evaluations each" in proc.stdout
    # without a teacher, or with one trained on other data: one line naming teacher
    for extra in ([], [f"teacher={teacher}", "data.edges=sobel"]):
        proc = run(["catdiff.train", "experiment=few_step", *FAST, *extra], env=env, check=False)
        assert proc.returncode == 2 and "teacher" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
