"""Resuming compares the checkpoint's settings with the current config: a changed model shape,
schedule, T, objective or image space is one line naming each key, exit 2, unless
``resume_check=false`` says the change is meant (never for a model shape)."""

from __future__ import annotations

from pathlib import Path

import pytest

from catdiff.errors import UserError
from catdiff.resume import check_same_setup, setup_differences
from tests.test_cli import FAST, run

STORED = {
    "model": {"_target_": "catdiff.models.UNet", "base_channels": 8, "dropout": 0.0},
    "diffusion": {"schedule": "linear", "T": 50, "objective": "eps", "loss": "l1"},
    "data": {"image_size": 28, "channels": 1, "edges": "none", "batch_size": 16},
}


def changed(**changes: object) -> dict:
    out = {k: dict(v) for k, v in STORED.items()}
    for dotted, value in changes.items():
        group, key = dotted.split("__")
        out[group][key] = value
    return out


def test_only_what_the_weights_were_trained_for_is_compared() -> None:
    # batch size, loss and dropout may change on resume: they do not change what was learned
    same = changed(data__batch_size=64, diffusion__loss="l2", model__dropout=0.1)
    assert setup_differences(STORED, same) == ([], [])
    shape, setup = setup_differences(
        STORED, changed(model__base_channels=16, diffusion__T=100, data__edges="sobel")
    )
    assert shape == ["model.base_channels 8 -> 16"]
    assert setup == ["diffusion.T 50 -> 100", "data.edges 'none' -> 'sobel'"]


def test_a_changed_setup_is_refused_unless_allowed() -> None:
    state = {"catdiff": {"config": STORED}, "global_step": 3}
    new = changed(diffusion__schedule="cosine", diffusion__objective="v")
    with pytest.raises(UserError) as caught:
        check_same_setup(state, new, "x.ckpt", allow=False)
    message = str(caught.value)
    assert "\n" not in message and "resume_check=false" in message
    assert "diffusion.schedule 'linear' -> 'cosine'" in message
    assert "diffusion.objective 'eps' -> 'v'" in message
    check_same_setup(state, new, "x.ckpt", allow=True)  # meant: goes on
    with pytest.raises(UserError, match="holds another model: model.base_channels 8 -> 4"):
        check_same_setup(state, changed(model__base_channels=4), "x.ckpt", allow=True)


def test_resuming_under_another_config_stops_in_one_line(tmp_path: Path) -> None:
    env = {"CATDIFF_OUTPUTS": str(tmp_path / "out")}
    run(["catdiff.train", *FAST, "name=first"], env=env)
    (ckpt,) = (tmp_path / "out" / "first").glob("*/checkpoints/last.ckpt")
    for override, key in (
        ("diffusion.schedule=cosine", "diffusion.schedule 'linear' -> 'cosine'"),
        ("model=unet_small", "model.base_channels 8 -> 16"),
    ):
        proc = run(["catdiff.train", *FAST, f"ckpt_path={ckpt}", override], env=env, check=False)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert proc.returncode == 2 and len(errors) == 1 and key in errors[0], proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
    ok = run(
        ["catdiff.train", *FAST, f"ckpt_path={ckpt}", "diffusion.schedule=cosine"]
        + ["resume_check=false", "trainer.max_steps=25"],
        env=env,
    )
    assert "run folder:" in ok.stdout
