"""The fixed budgets the committed reports were run at (conf/budget/): every experiment composes
at each, and a budget changes the amount of training, never the experiment's own settings."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from catdiff.validate import check_train_config
from tests.conftest import CONF, compose

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
# What a report's Compute table and NOTES.md promise: images seen per run at each budget.
IMAGES = {"laptop": 25_600, "faces": 192_000}
# The keys a budget sets; everything else comes from the experiment.
BUDGET_KEYS = ("model", "data.batch_size", "trainer", "module.lr_scheduler", "callbacks")


def _without_budget_keys(cfg) -> dict:
    plain = OmegaConf.to_container(cfg, resolve=False)
    plain.pop("hydra", None)
    for key in BUDGET_KEYS:
        *parents, leaf = key.split(".")
        node = plain
        for p in parents:
            node = node[p]
        node.pop(leaf, None)
    return plain


@pytest.mark.parametrize("budget", sorted(IMAGES))
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_at_every_budget(name: str, budget: str) -> None:
    # few_step tunes a trained run: its check wants a teacher (the file is read only by train)
    args = [f"experiment={name}"] + (["teacher=teacher.ckpt"] if name == "few_step" else [])
    cfg = compose([*args, f"budget={budget}"])
    check_train_config(cfg)
    assert cfg.trainer.max_steps * cfg.data.batch_size == IMAGES[budget]
    assert cfg.trainer.precision == "auto"
    assert OmegaConf.to_container(cfg.model) == OmegaConf.to_container(
        compose([*args, "model=unet_small"]).model
    )
    # the experiment's schedule, loss, objective, edges, sampler, sweep axes are untouched
    assert _without_budget_keys(cfg) == _without_budget_keys(compose(args))
    assert cfg.hydra.sweeper.params == compose(args).hydra.sweeper.params


def test_faces_is_laptop_trained_longer() -> None:
    laptop, faces = compose(["budget=laptop"]), compose(["budget=faces"])
    for key in ("trainer.max_steps", "trainer.val_check_interval", "trainer.log_every_n_steps"):
        OmegaConf.update(faces, key, OmegaConf.select(laptop, key), merge=False)
    faces_plain, laptop_plain = (OmegaConf.to_container(c, resolve=False) for c in (faces, laptop))
    faces_plain.pop("hydra")
    laptop_plain.pop("hydra")
    assert faces_plain == laptop_plain
