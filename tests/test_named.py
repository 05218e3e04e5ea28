"""A new schedule or loss is its own module: named by import path in the config, no catdiff
file edited; a wrong path or a wrong output is one line naming the key."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from catdiff.diffusion import GaussianDiffusion, make_betas
from catdiff.errors import UserError
from tests.test_cli import FAST, run

PLUGIN = textwrap.dedent(
    """
    import torch

    def exponential(T, beta_start, beta_end):
        # log beta evenly spaced from beta_start to beta_end
        return torch.logspace(torch.log10(torch.tensor(beta_start)), torch.log10(torch.tensor(beta_end)), T, dtype=torch.float64)

    def wrong_length(T, beta_start, beta_end):
        return torch.full((T + 1,), 0.01)

    def cauchy(pred, target, huber_delta):
        return torch.log1p((pred - target).square())
    """
)


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "my_ideas.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    return str(tmp_path)


def test_a_schedule_and_a_loss_by_import_path(plugin: str) -> None:
    betas = make_betas("my_ideas.exponential", 10, 1e-4, 0.02)
    assert betas.dtype == torch.float64 and betas.shape == (10,)
    assert torch.allclose(betas[[0, -1]], torch.tensor([1e-4, 0.02], dtype=torch.float64))
    d = GaussianDiffusion(betas, loss="my_ideas.cauchy")
    x0, noise, t = torch.zeros(2, 1, 4, 4), torch.ones(2, 1, 4, 4), torch.tensor([0, 9])
    loss = d.loss_per_sample(torch.zeros_like(x0), x0, t, noise)
    assert torch.allclose(loss, torch.log1p(torch.ones(2)))  # eps target 1, prediction 0


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("no_such_module.fn", "cannot import it"),
        ("my_ideas.missing", "cannot import it"),
        ("my_ideas.wrong_length", "must give T=10 betas"),
        ("exp", "choose one of linear"),
    ],
)
def test_a_bad_schedule_is_one_line(plugin: str, name: str, message: str) -> None:
    with pytest.raises(UserError, match=message) as caught:
        make_betas(name, 10)
    assert "\n" not in str(caught.value) and "diffusion.schedule" in str(caught.value)


def test_training_takes_them_from_the_command_line(plugin: str, tmp_path: Path) -> None:
    env = {
        "PYTHONPATH": os.pathsep.join([plugin, *sys.path]),
        "CATDIFF_OUTPUTS": str(tmp_path / "out"),
    }
    proc = run(
        ["catdiff.train", *FAST, "diffusion.schedule=my_ideas.exponential"]
        + ["diffusion.loss=my_ideas.cauchy"],
        env=env,
    )
    assert "run folder:" in proc.stdout
    (config,) = (tmp_path / "out").glob("*/*/config.yaml")
    assert "my_ideas.exponential" in config.read_text()
