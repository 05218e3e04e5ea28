"""``key=value`` options of the experiments.vs_diffusers commands, and their one-line errors."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from typing import Any

from catdiff.errors import UserError


def parse(
    argv: Sequence[str] | None,
    defaults: dict[str, Any],
    command: str,
    required: Sequence[str] = (),
) -> dict[str, Any]:
    """Options over ``defaults``, each value typed like its default (None: a string; a tuple:
    comma-separated integers).

    A missing required key, an unknown key or a value of the wrong type is a UserError that
    names the key and the command.
    """
    opts = dict(defaults)
    for arg in sys.argv[1:] if argv is None else argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in defaults:
            raise UserError(
                f"{arg!r} is not an option of python -m {command}; options: "
                + " ".join(f"{k}=" for k in defaults)
            )
        opts[key] = _typed(key, value, defaults[key])
    missing = [k for k in required if opts.get(k) is None]
    if missing:
        raise UserError(f"python -m {command} needs {' '.join(f'{k}=...' for k in missing)}")
    return opts


def _typed(key: str, value: str, default: Any) -> Any:
    if isinstance(default, tuple):  # comma-separated integers, e.g. final_seeds=0,1,2
        try:
            return tuple(int(v) for v in value.split(",") if v.strip())
        except ValueError:
            raise UserError(f"{key}={value} must be comma-separated integers") from None
    if isinstance(default, bool):
        if value.lower() not in ("true", "false"):
            raise UserError(f"{key}={value} must be true or false")
        return value.lower() == "true"
    for kind in (int, float):
        if isinstance(default, kind):
            try:
                return kind(value)
            except ValueError:
                raise UserError(
                    f"{key}={value} must be a{'n' if kind is int else ''} {kind.__name__}"
                ) from None
    return value


def one_line_errors(main: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a UserError into ``error: ...`` on stderr and exit status 2."""

    @functools.wraps(main)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    return wrapped
