"""Bad input is one line naming the key, exit 2, before anything is built: table-driven over the
cases users hit, and property-based over every key of the validation table."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf, open_dict

from catdiff.config import build
from catdiff.errors import UserError
from catdiff.validate import check_train_config, rules
from tests.conftest import ROOT, compose, one_error
from tests.test_cli import run

FAST = ["debug=fast", "data=synthetic", "logger=none"]


@pytest.fixture(scope="module")
def fast_cfg():
    return compose(FAST)


def with_value(cfg, key: str, value):
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    with open_dict(out):
        OmegaConf.update(out, key, value, merge=False, force_add=True)
    return out


CASES = [
    ("data.image_size", 1000, "data.image_size=1000"),
    ("model.base_channels", 0, "model.base_channels=0"),
    ("module.optimizer.lr", -1, "module.optimizer.lr=-1"),
    ("module.optimizer.lr", float("nan"), "module.optimizer.lr=nan"),
    ("seed", -1, "seed=-1"),
    ("data.batch_size", 0, "data.batch_size=0"),
    ("data.channels", 2, "data.channels=2"),
    ("data.edges", "canny", "data.edges='canny'"),
    ("diffusion.T", 1, "diffusion.T=1"),
    ("diffusion.schedule", "exp", "diffusion.schedule='exp'"),
    ("diffusion.beta_end", 1.5, "diffusion.beta_end=1.5"),
    ("diffusion.beta_start", 0.5, "diffusion.beta_start=0.5 must be below"),
    ("module.optimizer.betas", [0.9], "module.optimizer.betas=[0.9]"),
    ("module.ema_decay", 2.0, "module.ema_decay=2.0"),
    ("trainer.max_steps", 0, "trainer.max_steps=0"),
    ("trainer.val_check_interval", 0, "trainer.val_check_interval=0"),
    ("data.val_fraction", 0.6, None),  # + test_fraction 0.5 below
    ("sampler.steps", 10_000, "sampler.steps=10000 is more than diffusion.T=50"),
    ("callbacks.sample_grid.sampler.steps", 51, "callbacks.sample_grid.sampler.steps=51"),
    ("name", "", "name=''"),
]


@pytest.mark.parametrize(("key", "value", "expected"), CASES)
def test_a_bad_value_is_one_line_naming_it(fast_cfg, key, value, expected) -> None:
    cfg = with_value(fast_cfg, key, value)
    if key == "data.val_fraction":
        cfg = with_value(cfg, "data.test_fraction", 0.5)
        expected = "data.val_fraction=0.6 + data.test_fraction=0.5"
    with pytest.raises(UserError) as caught:
        check_train_config(cfg)
    message = str(caught.value)
    assert "\n" not in message and expected in message, message


def test_the_shipped_configs_pass(fast_cfg) -> None:
    check_train_config(fast_cfg)
    for experiment in sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml")):
        # few_step tunes a trained run: without teacher= it is refused (tests/test_consistency.py)
        args = [f"experiment={experiment}"] + (
            ["teacher=t.ckpt"] if experiment == "few_step" else []
        )
        check_train_config(compose([*args, "budget=laptop"]))
        check_train_config(compose(args))


def test_the_attention_check_uses_the_models_own_levels(fast_cfg) -> None:
    # 512x512 with attention at full resolution: 262,144 positions, far past any machine.
    cfg = with_value(with_value(fast_cfg, "data.image_size", 512), "model.attention_levels", [0])
    with pytest.raises(UserError, match="self-attention needs"):
        check_train_config(cfg)
    # 64x64 attending at the tiny model's coarsest level (32x32) is small.
    small = with_value(cfg, "data.image_size", 64)
    check_train_config(with_value(small, "model.attention_levels", [1]))


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("data.image_size=1000", "data.image_size=1000"),
        ("model.base_channels=0", "model.base_channels=0"),
        ("module.optimizer.lr=-1", "module.optimizer.lr=-1"),
        ("seed=-1", "seed=-1"),
    ],
)
def test_the_cli_stops_with_one_line_and_exit_2(tmp_path: Path, override, expected) -> None:
    env = {"CATDIFF_OUTPUTS": str(tmp_path / "out")}
    assert expected in one_error(run(["catdiff.train", *FAST, override], env=env, check=False))
    assert not list((tmp_path / "out").rglob("*.ckpt")) and not list(tmp_path.rglob("cache"))


# ------------------------------------------------------------------------ property-based
KEYS = [rule.key for rule in rules() if not rule.key.startswith(("n", "batch_size", "zoom"))]

ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.one_of(st.integers(-5, 5), st.floats(-2, 2)), max_size=4),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(KEYS), value=ANY_VALUE)
def test_validation_never_crashes_on_any_value(fast_cfg, key, value) -> None:
    """Any value at any key: the config passes, or one line names that key."""
    cfg = with_value(fast_cfg, key, value)
    try:
        check_train_config(cfg)
    except UserError as e:
        assert "\n" not in str(e)
        assert key in str(e) or "diffusion.beta" in str(e) or "data.val_fraction" in str(e)


# Cheap-to-run ranges that still cross every boundary of the rules.
CHEAP = {
    "seed": st.integers(-3, 2**33),
    "data.image_size": st.integers(-2, 40),
    "data.batch_size": st.integers(-1, 6),
    "model.base_channels": st.integers(-1, 12),
    "model.num_res_blocks": st.integers(-1, 2),
    "model.attention_heads": st.integers(-1, 4),
    "model.norm_groups": st.integers(-1, 8),
    "model.dropout": st.floats(-0.5, 1.5),
    "model.channel_mults": st.lists(st.integers(-1, 3), max_size=3),
    "model.attention_levels": st.lists(st.integers(-1, 2), max_size=2),
    "diffusion.T": st.integers(-1, 60),
    "diffusion.beta_start": st.one_of(st.floats(-0.1, 1.1), st.just(math.nan)),
    "diffusion.beta_end": st.one_of(st.floats(-0.1, 1.1), st.just(math.nan)),
    "diffusion.huber_delta": st.floats(-1, 3),
    "diffusion.t_p_std": st.floats(-1, 3),
    "module.optimizer.lr": st.one_of(st.floats(-1, 20), st.sampled_from([math.nan, math.inf])),
    "module.optimizer.weight_decay": st.floats(-1, 2),
    "module.optimizer.betas": st.lists(st.floats(-0.5, 1.5), min_size=1, max_size=3),
    "module.lr_scheduler.warmup_steps": st.integers(-2, 30),
    "module.lr_scheduler.min_lr_ratio": st.floats(-1, 2),
    "module.ema_decay": st.floats(-1, 2),
}


def one_step(cfg) -> float:
    """Build the run's model, diffusion, optimizer and scheduler and take one training step
    on random images of the configured shape (what fit() would do first)."""
    torch.manual_seed(0)
    model = build(cfg.model, "model")
    diffusion = build(cfg.diffusion, "diffusion")
    channels = int(cfg.model.in_channels)
    size = int(cfg.data.image_size)
    x0 = torch.rand(min(int(cfg.data.batch_size), 4), channels, size, size) * 2 - 1
    optimizer = build(cfg.module.optimizer, "module.optimizer")(params=model.parameters())
    scheduler = build(cfg.module.lr_scheduler, "module.lr_scheduler")(optimizer, total_steps=20)
    t = diffusion.sample_timesteps(x0.shape[0], "cpu")
    noise = torch.randn_like(x0)
    loss = diffusion.loss_per_sample(model(diffusion.q_sample(x0, t, noise), t), x0, t, noise)
    loss.mean().backward()
    optimizer.step()
    scheduler.step()
    return float(loss.mean().detach())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_config_that_passes_validation_trains(fast_cfg, data) -> None:
    key = data.draw(st.sampled_from(sorted(CHEAP)))
    value = data.draw(CHEAP[key])
    cfg = with_value(fast_cfg, key, value)
    try:
        check_train_config(cfg)
    except UserError:
        return
    # Building may still refuse with one line (e.g. norm_groups must divide the widths)...
    try:
        loss = one_step(cfg)
    except UserError as e:
        assert "\n" not in str(e)
        return
    # ...but never crash, and the first loss is a number.
    assert math.isfinite(loss)


@settings(max_examples=60, deadline=None)
@given(blob=st.binary(max_size=2048))
def test_random_bytes_as_a_checkpoint_are_refused_in_one_line(tmp_path_factory, blob) -> None:
    from catdiff.checkpoints import load_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "x.ckpt"
    path.write_bytes(blob)
    with pytest.raises(UserError) as caught:
        load_checkpoint(path)
    assert "\n" not in str(caught.value) and "ckpt=" in str(caught.value)


@settings(max_examples=60, deadline=None)
@given(blob=st.binary(max_size=4096), png_header=st.booleans())
def test_random_bytes_as_an_image_are_skipped_and_counted(tmp_path_factory, blob, png_header):
    from PIL import Image

    from catdiff.data import load_source

    folder = tmp_path_factory.mktemp("imgs")
    for i in range(2):
        Image.new("L", (8, 8), 40 * i).save(folder / f"good{i}.png")
    prefix = b"\x89PNG\r\n\x1a\n" if png_header else b""
    (folder / "random.png").write_bytes(prefix + blob)
    loaded = load_source("folder", root=folder, image_size=8, cache_dir=None)
    report = loaded.report
    assert report.files_seen == 3 and report.decoded + report.unreadable == 3
    assert loaded.images.shape[0] >= 2
    str(report).encode("utf-8")  # the report line prints (no lone surrogates)


# The command line itself, as a user types it: a random value at a random key of the table.
CLI_VALUE = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.sampled_from(["nan", "inf", "-inf", "1e300", "-0.5", "null", "true", "[]", "[0,-1]", "''"]),
    st.text(alphabet="abcxyz01_-./ ", min_size=1, max_size=8),
)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from([k for k in KEYS if k != "name"]), value=CLI_VALUE)
def test_the_cli_on_random_values_exits_0_or_2_with_one_line(tmp_path_factory, key, value):
    out = tmp_path_factory.mktemp("cli")
    args = [*FAST, "trainer.max_steps=2", "trainer.val_check_interval=1", f"{key}={value}"]
    proc = run(["catdiff.train", *args], env={"CATDIFF_OUTPUTS": str(out)}, check=False)
    if proc.returncode == 0:  # (run's timeout fails a hang)
        assert "run folder:" in proc.stdout and "Traceback" not in proc.stderr
        assert list(out.rglob("last.ckpt"))  # it trained and kept its work
    else:
        one_error(proc)
