"""One command line for every entry point: Hydra overrides over ``conf/<name>.yaml``.

``catdiff.train`` runs under ``@hydra.main``; the other entry points compose the same conf/
with Hydra's compose API (no output folder, no change of directory), so they take the same
overrides. The sampler is whatever ``conf/sampler/<choice>.yaml`` builds; the choice is its
name (:func:`choice`). A plain key that is not an option of the entry point but is one of the
chosen sampler's means ``sampler.<key>`` (``steps=50``). A config mistake is one line on
stderr naming the key, exit code 2 (a diverged run: exit code 1); ``HYDRA_FULL_ERROR=1``
shows the full trace instead.
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    MissingMandatoryValue,
    OmegaConfBaseException,
)

from catdiff.allocator import keep_freed_memory
from catdiff.config import build, check_value_types, conf_dir
from catdiff.errors import TrainingDiverged, UserError
from catdiff.validate import check_values

_FULL_TRACE = False  # HYDRA_FULL_ERROR=1 was set by the user (run_hydra sets it for itself)


def describe(error: BaseException) -> str:
    """One line for a config mistake, naming the key."""
    inner = error.__cause__ or error.__context__
    while inner is not None and not isinstance(inner, UserError):
        inner = inner.__cause__ or inner.__context__
    if inner is not None and not isinstance(error, UserError):  # raised inside a resolver
        return str(inner)
    if isinstance(error, MissingConfigException) and error.missing_cfg_file:
        group, _, choice = str(error.missing_cfg_file).rpartition("/")
        if group:
            options = ", ".join(error.options or [])
            return f"{group}={choice} does not exist; {group} is one of: {options}"
    cause = error.__cause__
    if isinstance(cause, ConfigKeyError | ConfigAttributeError) and "Could not override" in str(
        error
    ):
        key = cause.full_key or str(error).split("'")[1]
        return (
            f"unknown config key '{key}' (see `python -m catdiff.train --cfg job` for the keys; "
            f"+{key}=VALUE adds a new one)"
        )
    if isinstance(error, MissingMandatoryValue) or isinstance(cause, MissingMandatoryValue):
        missing = error if isinstance(error, MissingMandatoryValue) else cause
        key = missing.full_key
        return f"{key} must be set: pass {key}=VALUE"
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Around a ``@hydra.main`` job: a config mistake exits 2 here, so a sweep stops at its
    first bad member (under submitit it is raised, for submitit to record). A diverged single
    run exits 1; in a sweep the other members go on."""
    try:
        yield
    except (UserError, OmegaConfBaseException) as e:
        if _FULL_TRACE or "SUBMITIT_FOLDER" in os.environ:
            raise
        _exit(describe(e), 2)
    except TrainingDiverged as e:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if _FULL_TRACE or HydraConfig.get().mode != RunMode.RUN:
            raise
        _exit(str(e), 1)


def _exit(message: str, code: int) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def run_hydra(main: Callable[[], Any]) -> None:
    """Call a ``@hydra.main`` function: config mistakes exit 2, a diverged run 1, on one line."""
    global _FULL_TRACE
    _FULL_TRACE = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # make Hydra raise instead of printing its own report
    try:
        main()
    except (UserError, HydraException, OmegaConfBaseException, TrainingDiverged) as e:
        if _FULL_TRACE:
            raise
        diverged = isinstance(e, TrainingDiverged)
        _exit(str(e) if diverged else describe(e), 1 if diverged else 2)


def _has(cfg: DictConfig, key: str) -> bool:
    """Whether dotted ``key`` exists in ``cfg`` (a required ``???`` value counts)."""
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, throw_on_missing=False) if parent else cfg
    if not isinstance(node, DictConfig):
        return False
    return leaf in node or OmegaConf.is_missing(node, leaf)


def _as_override(arg: str) -> Any:
    """``arg`` as a Hydra override; a value the grammar cannot read (``=`` or ``,`` in a path)
    is re-read quoted."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    try:
        (override,) = parser.parse_overrides([arg])
        if not override.is_sweep_override():
            return override
    except HydraException:
        pass
    key, sep, value = arg.partition("=")
    if not sep or not key or any(c in key for c in " ='\""):
        raise UserError(f"argument {arg!r} is not key=value")
    quote = '"' if "'" in value else "'"
    try:
        (override,) = parser.parse_overrides([f"{key}={quote}{value}{quote}"])
    except HydraException:
        raise UserError(f"argument {arg!r} is not key=value") from None
    return override


def _compose(name: str, overrides: list[str]) -> DictConfig:
    """conf/<name>.yaml with ``overrides`` and the hydra node (resets Hydra's global state)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(conf_dir()), version_base="1.3", job_name=name):
        return compose(name, overrides=overrides, return_hydra_config=True)


def _is_group(key: str) -> bool:
    """A config group (a folder of conf/, or one of Hydra's own such as hydra/launcher)."""
    return key.startswith("hydra/") or (conf_dir() / key).is_dir()


def compose_config(name: str, argv: list[str]) -> DictConfig:
    """conf/<name>.yaml with ``argv`` (with the shorthands above); the group choices stay
    readable through :func:`choice`. Raises UserError."""
    from hydra.core.hydra_config import HydraConfig

    overrides = [_as_override(arg) for arg in argv]
    try:  # the defaults for this command line's group choices: which keys exist, their types
        reference = _compose(name, [o.input_line for o in overrides if _is_group(o.key_or_group)])
    except (HydraException, OmegaConfBaseException) as e:
        raise UserError(describe(e)) from None
    sampler = reference.get("sampler")
    lines, values = [], []
    for o in overrides:
        key = o.key_or_group
        if _is_group(key) or o.is_add() or o.is_delete() or o.is_force_add():
            lines.append(o.input_line)
            continue
        if "." not in key and not _has(reference, key) and isinstance(sampler, DictConfig):
            if key not in sampler:
                options = ", ".join(k for k in sampler if not k.startswith("_"))
                raise UserError(
                    f"unknown option '{key}': conf/{name}.yaml has no {key}, and "
                    f"sampler={reference.hydra.runtime.choices.get('sampler')} takes {options}"
                )
            key = f"sampler.{key}"  # the shorthand: steps=50 is sampler.steps=50
        if not _has(reference, key):
            raise UserError(f"unknown option '{key}' (the options are in conf/{name}.yaml)")
        line = key + o.input_line[len(o.key_or_group) :]
        lines.append(line)
        values.append((key, line.split("=", 1)[1]))
    try:
        cfg = _compose(name, lines)
        HydraConfig.instance().set_config(cfg)
        cfg = copy.deepcopy(cfg)
        with read_write(cfg), open_dict(cfg):
            del cfg["hydra"]
        OmegaConf.to_container(cfg, throw_on_missing=True)
    except (HydraException, OmegaConfBaseException) as e:
        raise UserError(describe(e)) from None
    check_value_types(cfg, reference, values)
    check_values(cfg, where=f"conf/{name}.yaml")  # the ranges and choices every entry point shares
    return cfg


def choice(group: str) -> str | None:
    """The option chosen for ``group`` (``sampler`` -> ``ddim``) in the config composed last."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return HydraConfig.get().runtime.choices.get(group)


def sampler_name(sampler: Any) -> str:
    """The sampler's config group choice, else its ``name`` attribute, else its class name."""
    return choice("sampler") or getattr(sampler, "name", None) or type(sampler).__name__


def build_sampler(name: str, **options: Any) -> Any:
    """The sampler ``conf/sampler/<name>.yaml`` builds, ``options`` over its keys."""

    def value(v: Any) -> str:
        return "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)

    argv = [f"sampler={name}"] + [f"sampler.{k}={value(v)}" for k, v in options.items()]
    try:
        node = _compose("sample", argv).sampler
    except (HydraException, OmegaConfBaseException) as e:
        raise UserError(describe(e)) from None
    return build(node, "sampler")


def run_main(run: Callable[[DictConfig], Any], name: str, argv: list[str] | None) -> None:
    """Compose conf/<name>.yaml with the command line and run; a UserError exits 2."""
    keep_freed_memory()  # sampling re-allocates the same activations every step
    try:
        run(compose_config(name, sys.argv[1:] if argv is None else argv))
    except UserError as e:
        _exit(str(e), 2)
