"""A choice by name, or any function by its import path: how a new schedule or loss needs no
edit of catdiff.

``diffusion.schedule=cosine`` picks a built-in; ``diffusion.schedule=mylab.schedules.exp``
imports ``exp`` from the module ``mylab.schedules`` (any module on the Python path: a file in
the working folder, a package). The function has the built-ins' signature (see
:func:`catdiff.diffusion.schedules.make_betas` and :func:`catdiff.diffusion.losses.elementwise_loss`),
and its output is checked like theirs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from catdiff.errors import UserError


def is_import_path(value: object) -> bool:
    """``a.b.c`` with identifiers for parts: a module path and a name in it."""
    parts = str(value).split(".")
    return isinstance(value, str) and len(parts) >= 2 and all(p.isidentifier() for p in parts)


def resolve(value: Any, builtin: Mapping[str, Callable], key: str) -> Callable:
    """``builtin[value]``, or the function at import path ``value``; one line naming ``key``."""
    if isinstance(value, str) and value in builtin:
        return builtin[value]
    if not is_import_path(value):
        raise UserError(
            f"{key}={value!r} is unknown; choose one of {', '.join(builtin)}, "
            "or give a function's import path (package.module.function)"
        )
    module, _, name = value.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise UserError(f"{key}={value}: cannot import it ({type(e).__name__}: {e})") from None
    if not callable(found):
        raise UserError(f"{key}={value} is not a function")
    return found
