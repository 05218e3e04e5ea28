"""The Hydra configuration users compose: defaults are the seed's experiment, experiments compose."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate

from tests.conftest import CONF, compose

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def test_defaults_are_the_seed_experiment() -> None:
    cfg = compose()
    assert cfg.data.source == "catfaces" and cfg.data.image_size == 28 and cfg.data.channels == 1
    assert (
        cfg.diffusion.schedule,
        cfg.diffusion.T,
        cfg.diffusion.objective,
        cfg.diffusion.loss,
    ) == ("linear", 1000, "eps", "l1")
    assert cfg.sampler._target_.endswith("DDPMSampler") and cfg.sampler.sigma == "beta_tilde"
    assert cfg.model.in_channels == 1


def test_there_are_experiments() -> None:
    assert {"baseline", "edge_trial"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_and_builds(name: str) -> None:
    cfg = compose([f"experiment={name}", "debug=fast", "data=synthetic"])
    model = instantiate(cfg.model)
    diffusion = instantiate(cfg.diffusion)
    datamodule = instantiate(cfg.data)
    assert model.in_channels == datamodule.out_channels
    assert diffusion.T == cfg.diffusion.T


def test_edge_trial_trains_on_edges_with_matching_channels() -> None:
    cfg = compose(["experiment=edge_trial"])
    assert cfg.data.edges == "sobel" and cfg.model.in_channels == 1
    cfg = compose(["experiment=edge_trial", "data.edges=sobel+gray"])
    assert cfg.model.in_channels == 2
