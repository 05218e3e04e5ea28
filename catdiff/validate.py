"""One validation layer for every entry point's config, run before anything is built or written.

A config is checked against every :class:`Rule` whose key it has, then against the rules that
relate keys (``beta_start < beta_end``, a sampler's steps against T, the attention maps
against memory). The first failure is one UserError line naming the key, the value and what is
allowed, not a traceback minutes later. Choices come from the pure layers' own tables.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from catdiff.errors import UserError

_ABSENT = object()


@dataclass(frozen=True)
class Rule:
    """``key`` must satisfy ``ok(value)``; ``allowed`` says what it takes, for the message."""

    key: str
    ok: Callable[[Any], bool]
    allowed: str


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def integer(low: int | None = None, high: int | None = None) -> Callable[[Any], bool]:
    return lambda v: _integer(v) and (low is None or v >= low) and (high is None or v <= high)


def number(
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> Callable[[Any], bool]:
    def ok(v: Any) -> bool:
        if not _number(v):
            return False
        if low is not None and (v <= low if low_open else v < low):
            return False
        return high is None or (v < high if high_open else v <= high)

    return ok


def one_of(choices: Iterable[Any]) -> Callable[[Any], bool]:
    allowed = tuple(choices)
    return lambda v: (
        not isinstance(v, bool | ListConfig | DictConfig | list | dict) and (v in allowed)
    )


def optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _steps_or_all(v: Any) -> bool:  # -1 = no limit, as Lightning reads it
    return _integer(v) and (v == -1 or v >= 1)


def _interval(v: Any) -> bool:  # steps (int >= 1) or a fraction of an epoch in (0, 1]
    return (_integer(v) and v >= 1) or (isinstance(v, float) and 0.0 < v <= 1.0)


def _list_of(ok: Callable[[Any], bool], lengths: range = range(1 << 30)) -> Callable[[Any], bool]:
    return lambda v: (
        isinstance(v, ListConfig | list | tuple) and len(v) in lengths and all(map(ok, v))
    )


_betas = _list_of(number(0.0, 1.0, high_open=True), range(2, 3))
_positive_ints = _list_of(integer(1), range(1, 1 << 30))
_level_list = _list_of(integer(0))


def _text(v: Any) -> bool:
    return isinstance(v, str) and v.strip() != "" and "\x00" not in v


def _choices() -> dict[str, tuple[str, ...]]:
    from catdiff.data.decode import CROP_MODES, RESAMPLE_FILTERS
    from catdiff.data.edges import EDGE_MODES
    from catdiff.diffusion.gaussian import LOSS_WEIGHTS, OBJECTIVES
    from catdiff.diffusion.losses import LOSSES
    from catdiff.diffusion.schedules import SCHEDULES
    from catdiff.diffusion.timesteps import T_SAMPLINGS

    return {
        "schedule": tuple(SCHEDULES),
        "objective": tuple(OBJECTIVES),
        "loss": tuple(LOSSES),
        "loss_weight": tuple(LOSS_WEIGHTS),
        "t_sampling": tuple(T_SAMPLINGS),
        "edges": tuple(EDGE_MODES),
        "resample": tuple(RESAMPLE_FILTERS),
        "crop": tuple(CROP_MODES),
    }


def rules() -> tuple[Rule, ...]:
    """The table: every user-facing key of conf/ that takes a value from a range or a list."""
    from catdiff.diffusion.named import is_import_path  # torch: not at import (catdiff.runtime)

    c = _choices()
    return (
        Rule("seed", integer(0, 2**32 - 1), "an integer from 0 to 4294967295"),
        Rule("name", optional(_text), "a non-empty folder name"),
        Rule("resume_check", lambda v: isinstance(v, bool), "true or false"),
        Rule("teacher", optional(_text), "a checkpoint path, or null"),
        # data
        Rule("data.image_size", integer(4, 512), "an integer from 4 to 512 (the seed: 28)"),
        Rule("data.channels", one_of((1, 3)), "1 (grey) or 3 (RGB)"),
        Rule("data.batch_size", integer(1, 1 << 16), "an integer from 1 to 65536"),
        Rule("data.edges", one_of(c["edges"]), " | ".join(c["edges"])),
        Rule("data.edge_blur", number(0.0, 64.0), "a number from 0 to 64 (pixels)"),
        Rule("data.resample", one_of(c["resample"]), " | ".join(c["resample"])),
        Rule("data.crop", one_of(c["crop"]), " | ".join(c["crop"])),
        Rule("data.val_fraction", number(0.0, 1.0, high_open=True), "a number in [0, 1)"),
        Rule("data.test_fraction", number(0.0, 1.0, high_open=True), "a number in [0, 1)"),
        Rule("data.synthetic_n", integer(1, 10_000_000), "an integer of at least 1"),
        Rule("data.flip", lambda v: isinstance(v, bool), "true or false"),
        Rule("data.root", optional(_text), "a folder path, or null"),
        # model
        Rule("model.base_channels", integer(1, 4096), "an integer from 1 to 4096"),
        Rule("model.channel_mults", _positive_ints, "a non-empty list of positive integers"),
        Rule("model.num_res_blocks", integer(1, 64), "an integer from 1 to 64"),
        Rule("model.attention_levels", _level_list, "a list of level indices (0, 1, ...)"),
        Rule("model.attention_heads", integer(1, 256), "an integer from 1 to 256"),
        Rule("model.norm_groups", integer(1, 4096), "an integer of at least 1"),
        Rule("model.dropout", number(0.0, 1.0, high_open=True), "a number in [0, 1)"),
        # diffusion
        Rule("diffusion.T", integer(2, 100_000), "an integer from 2 to 100000"),
        Rule(
            "diffusion.schedule",
            lambda v: one_of(c["schedule"])(v) or is_import_path(v),
            " | ".join(c["schedule"]) + " | a function's import path",
        ),
        Rule(
            "diffusion.objective",
            lambda v: one_of(c["objective"])(v) or is_import_path(v),
            " | ".join(c["objective"]) + " | a class's import path",
        ),
        Rule(
            "diffusion.loss",
            lambda v: one_of(c["loss"])(v) or is_import_path(v),
            " | ".join(c["loss"]) + " | a function's import path",
        ),
        Rule("diffusion.loss_weight", one_of(c["loss_weight"]), " | ".join(c["loss_weight"])),
        Rule("diffusion.t_sampling", one_of(c["t_sampling"]), " | ".join(c["t_sampling"])),
        Rule("diffusion.beta_start", number(0.0, 1.0, True, True), "a number in (0, 1)"),
        Rule("diffusion.beta_end", number(0.0, 1.0, True, True), "a number in (0, 1)"),
        Rule("diffusion.huber_delta", number(0.0, None, low_open=True), "a number above 0"),
        Rule("diffusion.min_snr_gamma", number(0.0, None, low_open=True), "a number above 0"),
        Rule("diffusion.t_p_mean", number(-20.0, 20.0), "a number from -20 to 20"),
        Rule("diffusion.t_p_std", number(0.0, 20.0, low_open=True), "a number in (0, 20]"),
        # optimisation
        Rule("module.optimizer.lr", number(0.0, 10.0, low_open=True), "a number in (0, 10]"),
        Rule("module.optimizer.weight_decay", number(0.0, 10.0), "a number from 0 to 10"),
        Rule("module.optimizer.betas", _betas, "two numbers in [0, 1), e.g. [0.9, 0.999]"),
        Rule("module.lr_scheduler.warmup_steps", integer(0), "an integer of at least 0"),
        Rule("module.lr_scheduler.min_lr_ratio", number(0.0, 1.0), "a number from 0 to 1"),
        Rule("module.ema_decay", number(0.0, 1.0), "a number from 0 to 1"),
        Rule("module.val_buckets", integer(1, 1000), "an integer from 1 to 1000"),
        Rule("trainer.max_steps", _steps_or_all, "an integer of at least 1, or -1 (no limit)"),
        Rule(
            "trainer.val_check_interval",
            _interval,
            "steps (an integer >= 1) or a fraction in (0, 1]",
        ),
        Rule("trainer.log_every_n_steps", integer(1), "an integer of at least 1"),
        Rule("trainer.gradient_clip_val", optional(number(0.0)), "a number >= 0, or null"),
        Rule("trainer.num_nodes", integer(1), "an integer of at least 1"),
        Rule("callbacks.sample_grid.every_n_steps", integer(0), "an integer >= 0 (0 = off)"),
        Rule("callbacks.sample_grid.n", integer(1, 4096), "an integer from 1 to 4096"),
        Rule("callbacks.evaluate.every_n_steps", integer(0), "an integer >= 0 (0 = off)"),
        Rule("callbacks.snapshots.every_n_steps", integer(0), "an integer >= 0 (0 = off)"),
        # samplers (train's sampler group, sample's and evaluate's)
        Rule("sampler.steps", integer(1, 100_000), "an integer of at least 1"),
        Rule("sampler.eta", number(0.0, 1.0), "a number from 0 to 1"),
        # sample / evaluate
        Rule("n", integer(1, 10_000_000), "an integer of at least 1"),
        Rule("batch_size", integer(1, 1 << 16), "an integer from 1 to 65536"),
        Rule("zoom", integer(1, 64), "an integer from 1 to 64"),
        Rule("zoom_n", integer(1, 4096), "an integer from 1 to 4096"),
        Rule("trajectory_n", integer(1, 256), "an integer from 1 to 256"),
        Rule("grid_n", integer(1, 4096), "an integer from 1 to 4096"),
        Rule("weights", one_of(("ema", "raw")), "ema | raw"),
        Rule("device", one_of(("auto", "cpu", "cuda")), "auto | cpu | cuda"),
        Rule("precision", one_of(("fp32", "bf16", "auto")), "fp32 | bf16 | auto"),
        Rule("nll.timesteps", integer(1, 100_000), "an integer of at least 1"),
        Rule("nll.batch_size", integer(1, 1 << 16), "an integer from 1 to 65536"),
        Rule("metrics.kid_subsets", integer(1, 100_000), "an integer of at least 1"),
        Rule("metrics.kid_subset_size", integer(2, 10_000_000), "an integer of at least 2"),
    )


def _select(cfg: Any, key: str) -> Any:
    try:
        return OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False)
    except Exception:  # an interpolation only a running job resolves: not this layer's job
        return _ABSENT


def _show(value: Any) -> str:
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value)
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_values(cfg: Any, where: str = "") -> None:
    """Every rule whose key ``cfg`` has; raises a one-line UserError on the first bad value."""
    suffix = f" ({where})" if where else ""
    for rule in rules():
        value = _select(cfg, rule.key)
        if value is _ABSENT or value == "???":
            continue
        if not rule.ok(value):
            raise UserError(f"{rule.key}={_show(value)} is not allowed: {rule.allowed}{suffix}")


def _samplers(cfg: Any) -> list[tuple[str, Any]]:
    found = [("sampler", _select(cfg, "sampler"))]
    callbacks = _select(cfg, "callbacks")
    if isinstance(callbacks, DictConfig):
        for name in callbacks:
            found.append((f"callbacks.{name}.sampler", _select(cfg, f"callbacks.{name}.sampler")))
    return [(k, s) for k, s in found if isinstance(s, DictConfig)]


def check_steps_against_T(cfg: Any, T: Any) -> None:
    """A few-step sampler cannot take more steps than the process has timesteps."""
    if not _integer(T):
        return
    for key, node in _samplers(cfg):
        steps = _select(node, "steps")
        if _integer(steps) and steps > T:
            raise UserError(
                f"{key}.steps={steps} is more than diffusion.T={T}: use {key}.steps<={T}"
            )


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 16 << 30


def attention_bytes(
    image_size: int, batch: int, mults: list[int], levels: list[int], heads: int
) -> int:
    """Bytes of the largest fp32 self-attention score tensor of one training batch:
    ``batch * heads * (H*W)^2 * 4`` at the finest level with attention."""
    depth = len(mults)
    finest = min([*levels, depth - 1]) if levels else depth - 1
    side = max(image_size // (2**finest), 1)
    return batch * heads * (side * side) ** 2 * 4


def check_training_fits(cfg: Any) -> None:
    """``data.image_size`` and the model's attention must fit this machine's memory."""
    size, batch = _select(cfg, "data.image_size"), _select(cfg, "data.batch_size")
    mults = _select(cfg, "model.channel_mults")
    levels = _select(cfg, "model.attention_levels")
    heads = _select(cfg, "model.attention_heads")
    if not (_integer(size) and _integer(batch) and _positive_ints(mults) and _integer(heads)):
        return
    levels = [int(i) for i in levels] if _level_list(levels) else []
    need = attention_bytes(size, batch, [int(m) for m in mults], levels, heads)
    have = _memory_bytes()
    if need > have // 2:
        raise UserError(
            f"data.image_size={size}: one batch's self-attention needs ~{need / 2**30:,.0f} GiB "
            f"(this machine has {have / 2**30:,.0f} GiB): lower data.image_size or "
            "data.batch_size, or attend only at coarser model.attention_levels"
        )


def check_train_config(cfg: Any) -> None:
    """Everything ``python -m catdiff.train`` can check before building anything."""
    check_values(cfg)
    start, end = _select(cfg, "diffusion.beta_start"), _select(cfg, "diffusion.beta_end")
    if _number(start) and _number(end) and start >= end:
        raise UserError(f"diffusion.beta_start={start} must be below diffusion.beta_end={end}")
    val, test = _select(cfg, "data.val_fraction"), _select(cfg, "data.test_fraction")
    if _number(val) and _number(test) and val + test >= 1.0:
        raise UserError(
            f"data.val_fraction={val} + data.test_fraction={test} must leave images to train on (sum < 1)"
        )
    no_teacher = _select(cfg, "teacher") in (None, _ABSENT, "")
    if _select(cfg, "module.consistency") not in (None, _ABSENT) and no_teacher:
        raise UserError(
            "module.consistency tunes a trained model: pass teacher=<run>/checkpoints/last.ckpt"
        )
    check_steps_against_T(cfg, _select(cfg, "diffusion.T"))
    check_training_fits(cfg)
