"""``key=value`` command lines over a YAML file of defaults (catdiff.sample, catdiff.evaluate).

The defaults file is the list of options: an unknown key, a value of the wrong type or a
missing required value (``???``) is a :class:`~catdiff.errors.UserError` naming the key and
the file. Nested options are dotted: ``metrics.extractor=inception``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from catdiff.allocator import keep_freed_memory
from catdiff.errors import UserError


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
