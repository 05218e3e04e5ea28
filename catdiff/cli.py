"""Command lines: mistakes on one line, and ``key=value`` options over a YAML file of defaults.

Every entry point reports a config mistake (an unknown key, a wrong type, an experiment that
does not exist, a bad value) with one line on stderr that names the key, and exit code 2; a
diverged training run with one line and exit code 1. ``HYDRA_FULL_ERROR=1`` shows the full
trace instead. :func:`describe` writes the line; :func:`run_hydra` and :func:`one_line_errors`
are the two places a Hydra entry point catches the errors.

For ``parse_options`` (catdiff.sample, catdiff.evaluate) the defaults file is the list of
options: an unknown key, a value of the wrong type or a missing required value (``???``) is a
:class:`~catdiff.errors.UserError` naming the key and the file. Nested options are dotted:
``metrics.extractor=inception``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    MissingMandatoryValue,
    OmegaConfBaseException,
)

from catdiff.allocator import keep_freed_memory
from catdiff.errors import TrainingDiverged, UserError

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
    """Around the job inside a ``@hydra.main`` function: a config mistake is one line and exit
    2, here, before Hydra adds its own report, so a sweep stops at its first bad member. Under
    submitit the error goes back to the sweep (submitit records it) instead: exiting there would
    leave the job without a result. A diverged single run is one line and exit 1; in a sweep the
    other members go on and Hydra names this one."""
    try:
        yield
    except (UserError, OmegaConfBaseException) as e:
        if _FULL_TRACE or "SUBMITIT_FOLDER" in os.environ:
            raise
        print(f"error: {describe(e)}", file=sys.stderr)
        sys.exit(2)
    except TrainingDiverged as e:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if _FULL_TRACE or HydraConfig.get().mode != RunMode.RUN:
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


def run_hydra(main: Callable[[], Any]) -> None:
    """Call a ``@hydra.main`` function with config mistakes on one line (exit 2) and a diverged
    run on one line (exit 1): what ``python -m catdiff.<entry point>`` runs."""
    global _FULL_TRACE
    _FULL_TRACE = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # make Hydra raise instead of printing its own report
    try:
        main()
    except (UserError, HydraException, OmegaConfBaseException) as e:
        if _FULL_TRACE:
            raise
        print(f"error: {describe(e)}", file=sys.stderr)
        sys.exit(2)
    except TrainingDiverged as e:
        if _FULL_TRACE:
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


def _leaves(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        out = []
        for key, value in node.items():
            out += _leaves(value, f"{prefix}{key}.")
        return out
    return [(prefix[:-1], node)]


def _get(cfg: DictConfig, dotted: str) -> Any:
    return OmegaConf.select(cfg, dotted, throw_on_missing=False)


def parse_options(argv: list[str], defaults_file: Path) -> DictConfig:
    """Merge ``key=value`` arguments over ``defaults_file``; the defaults' types are the types."""
    where = f"{defaults_file.parent.name}/{defaults_file.name}"
    defaults = OmegaConf.load(defaults_file)
    OmegaConf.set_struct(defaults, True)
    for arg in argv:
        if "=" not in arg:
            raise UserError(f"argument {arg!r} is not key=value (options: {where})")
    try:
        cfg = OmegaConf.merge(defaults, OmegaConf.from_dotlist(argv))
        OmegaConf.to_container(cfg, throw_on_missing=True)
    except ConfigKeyError as e:
        options = ", ".join(key for key, _ in _leaves(OmegaConf.to_container(defaults)))
        raise UserError(
            f"unknown option {e.full_key or e.key!r}: options are {options} ({where})"
        ) from None
    except OmegaConfBaseException as e:
        first = str(e).strip().splitlines()[0]
        raise UserError(f"{first} (see {where})") from None
    for key, default in _leaves(OmegaConf.to_container(defaults)):
        value = _get(cfg, key)
        if default is None or default == "???":
            continue
        expected = (int, float) if isinstance(default, float) else type(default)
        if not isinstance(value, expected) or isinstance(value, bool) is not isinstance(
            default, bool
        ):
            raise UserError(f"{key}={value!r} must be a {type(default).__name__} ({where})")
    return cfg


def run_main(run: Callable[[DictConfig], Any], defaults_file: Path, argv: list[str] | None) -> None:
    """Parse, run, and turn a UserError into one line on stderr and exit status 2."""
    keep_freed_memory()  # sampling re-allocates the same activations every step
    try:
        run(parse_options(sys.argv[1:] if argv is None else argv, defaults_file))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
