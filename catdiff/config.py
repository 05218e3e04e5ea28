"""Hydra/OmegaConf glue: resolvers, building objects, the config checks, the W&B identity.

No Lightning or torch at import, so a config mistake is reported before the heavy imports.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from catdiff.errors import UserError
from catdiff.machine import usable_cores


def _wandb_offline() -> bool:
    """W&B logs offline (to files in the run folder) unless an API key is configured."""
    return not os.environ.get("WANDB_API_KEY")


def _data_channels(channels: Any, edges: Any) -> int:
    from catdiff.data.edges import data_channels

    return data_channels(int(channels), str(edges))


def _slurm_gpus(accelerator: Any, devices: Any) -> int | None:
    """GPUs per node to ask SLURM for: the trainer's devices on GPUs, none for CPU training."""
    if str(accelerator) not in ("gpu", "cuda"):
        return None
    if not isinstance(devices, int):
        raise UserError(
            f"trainer.devices={devices}: SLURM needs a GPU count, pass trainer.devices=N"
        )
    return devices


def check_run_name(name: Any) -> str:
    """``name`` as a folder under the output root; never one that leaves it or is empty."""
    text = str(name)
    parts = Path(text).parts
    if not text.strip() or Path(text).is_absolute() or ".." in parts or "\x00" in text:
        raise UserError(
            f"name={text!r} must be a folder name inside the output root "
            "(letters, digits, -, _, and / between parts; no '..' and no leading '/')"
        )
    return text


def _run_folder(root: Any, name: Any, prefix: str = "") -> str:
    """``<root>/<name>/<prefix><date_time>-<6 random hex>``; cached per config (``use_cache``),
    which Hydra copies into every sweep member, so one sweep resolves to one folder."""
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    return str(Path(str(root)) / check_run_name(name) / f"{prefix}{stamp}-{secrets.token_hex(3)}")


def register_resolvers() -> None:
    for name, fn, cache in (
        ("data_channels", _data_channels, False),
        ("wandb_offline", _wandb_offline, False),
        ("slurm_gpus", _slurm_gpus, False),
        ("run_folder", _run_folder, True),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn, use_cache=cache)


register_resolvers()


def conf_dir() -> Path:
    """``catdiff/conf``: a link to the checkout's conf/, or the copy inside the package."""
    return Path(__file__).resolve().parent / "conf"


def build(node: DictConfig, key: str, **kwargs: Any) -> Any:
    """``instantiate`` that lets a :class:`UserError` through; other mistakes name ``key``."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        while cause is not None and not isinstance(cause, UserError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        if _is_config_mistake(e.__cause__):  # e.g. an unknown or mistyped argument
            first_line = str(e.__cause__).strip().splitlines()[0]
            raise UserError(f"bad config under `{key}`: {first_line}") from e
        raise


def _is_config_mistake(error: BaseException | None) -> bool:
    if isinstance(error, TypeError | ValueError):
        return True
    # Lightning's "you asked for something this Trainer cannot do"
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    return isinstance(error, MisconfigurationException)


def to_plain(cfg: DictConfig) -> dict:
    """The resolved config as plain Python containers (safe for ``torch.load(weights_only=True)``)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)


# ----------------------------------------------------------------------------- checks
# Keys whose values legitimately change type (Lightning accepts 2, "auto", [0, 1] ...).
_ANY_TYPE = {
    "trainer.devices",
    "trainer.strategy",
    "trainer.precision",
    "trainer.val_check_interval",
    "trainer.limit_val_batches",
    "trainer.limit_train_batches",
    "module.channels_last",  # auto, true or false (resolve_channels_last checks it)
}


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, ListConfig | list):
        return "a list"
    if isinstance(value, DictConfig | dict):
        return "a mapping"
    return "a string"


def _same_type(old: Any, new: Any) -> bool:
    if old is None or new is None:
        return True
    kinds = (_kind(old), _kind(new))
    if kinds[0] == "a string":  # strings take any scalar
        return kinds[1] not in ("a list", "a mapping")
    return kinds[0] == kinds[1] or kinds == ("a number", "an integer")


def check_override_types(cfg: DictConfig) -> None:
    """:func:`check_value_types` for this job's overrides (a no-op outside a Hydra app)."""
    from hydra import compose
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not (HydraConfig.initialized() and GlobalHydra.instance().is_initialized()):
        return
    hydra = HydraConfig.get()
    groups = set(hydra.runtime.choices.keys())
    overrides = OverridesParser.create().parse_overrides(list(hydra.overrides.task))
    values = [o for o in overrides if o.key_or_group not in groups and not o.is_delete()]
    if not values:
        return
    reference = compose(
        config_name=hydra.job.config_name,
        overrides=[o.input_line for o in overrides if o.key_or_group in groups],
    )
    check_value_types(
        cfg, reference, [(o.key_or_group, o.get_value_element_as_str()) for o in values]
    )


def check_value_types(cfg: DictConfig, reference: DictConfig, items: list[tuple[str, str]]) -> None:
    """Each ``(key, value as typed)`` keeps the type of the value it replaces in ``reference``
    (the config composed with the same group choices only), else one line naming the key."""
    for key, typed in items:
        if key in _ANY_TYPE:
            continue
        try:
            old = OmegaConf.select(reference, key, throw_on_missing=False)
            new = OmegaConf.select(cfg, key, throw_on_missing=False)
        except Exception:  # an interpolation only a running job can resolve: not a type
            continue
        if not _same_type(old, new):
            default = OmegaConf.to_container(old) if OmegaConf.is_config(old) else old
            raise UserError(
                f"{key}={typed} has the wrong type: {key} takes {_kind(old)} (default: {default!r})"
            )


def check_devices(trainer: DictConfig) -> None:
    """``trainer.devices`` must exist on this machine: fail before any data is loaded."""
    devices = trainer.get("devices")
    accelerator = str(trainer.get("accelerator", "auto"))
    if devices is None:
        raise UserError("trainer.devices is not set: pass trainer.devices=N (devices per node)")
    if isinstance(devices, bool) or not isinstance(devices, int) or devices <= 0:
        return  # "auto", -1, a list of ids: Lightning checks those
    import torch

    from catdiff.precision import uses_gpu

    if uses_gpu(accelerator):
        found = torch.cuda.device_count()
        if devices > found:
            raise UserError(
                f"trainer.devices={devices} but this machine has {found} GPU(s): "
                f"lower trainer.devices, or use trainer=ddp_cpu to try DDP on CPU processes"
            )
    elif accelerator in ("cpu", "auto"):
        cores = usable_cores()
        if devices > cores:
            raise UserError(
                f"trainer.devices={devices} CPU processes but this machine has {cores} cores: "
                f"use trainer.devices<={cores}"
            )


def resolve_precision(cfg: DictConfig) -> None:
    """``trainer.precision=auto`` -> :func:`catdiff.precision.auto_precision`, recorded."""
    if cfg.trainer.precision == "auto":
        from catdiff.precision import auto_precision

        cfg.trainer.precision = auto_precision(cfg.trainer.accelerator)


def resolve_channels_last(cfg: DictConfig) -> None:
    """``module.channels_last=auto`` -> true or false for the resolved precision, recorded."""
    value = cfg.module.get("channels_last", False)
    if isinstance(value, bool):
        return
    if value != "auto":
        raise UserError(f"module.channels_last={value} must be auto, true or false")
    from catdiff.precision import auto_channels_last

    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    cfg.module.channels_last = auto_channels_last(accelerator, str(cfg.trainer.precision))


# ------------------------------------------------------------------------ identity
def _swept_keys(sweep_dir: Path, member_overrides: list[str], params: Any) -> list[str]:
    """The keys a sweep varies (sweeper params and the lists of ``multirun.yaml``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    lines = [f"{k}={v}" for k, v in (params or {}).items()]
    saved = sweep_dir / "multirun.yaml"
    if saved.is_file():
        lines += list(OmegaConf.load(saved).hydra.overrides.task)
    swept: dict[str, bool] = {}
    for override in OverridesParser.create().parse_overrides(lines):
        swept[override.key_or_group] = override.is_sweep_override()
    members = {line.split("=", 1)[0].lstrip("+~") for line in member_overrides}
    return [k for k, is_sweep in swept.items() if is_sweep and k in members]


def run_identity(cfg: DictConfig) -> dict[str, Any]:
    """The W&B ``group`` (name and sweep id), ``name`` (the swept values), ``id`` (from the
    run folder: a requeued job continues its own run) and ``tags``."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    run_dir = Path(cfg.paths.run_dir)
    group, name = str(cfg.name), run_dir.name
    if HydraConfig.initialized():
        hydra = HydraConfig.get()
        if hydra.mode == RunMode.MULTIRUN:
            sweep_dir = Path(hydra.sweep.dir)
            group = f"{cfg.name}-{sweep_dir.name.removeprefix('multirun_')}"
            task = list(hydra.overrides.task)
            axes = _swept_keys(sweep_dir, task, hydra.sweeper.get("params"))
            values = dict(line.lstrip("+").split("=", 1) for line in task if "=" in line)
            swept = [f"{k.rsplit('.', 1)[-1]}={values[k]}" for k in axes if k in values]
            name = " ".join(swept) or name
    d = cfg.get("diffusion") or {}
    data = cfg.get("data") or {}
    tags = [str(cfg.name)] + [
        str(v) for v in (d.get("schedule"), d.get("objective"), d.get("loss")) if v is not None
    ]
    if data.get("edges") not in (None, "none"):
        tags.append(f"edges={data.get('edges')}")
    run_id = hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:16]
    return {"group": group, "name": name, "id": run_id, "tags": tags}
