"""Resuming a run: which checkpoint, from which step, and requeueing a preempted job.

A run resumes from ``ckpt_path=PATH``, ``ckpt_path=last`` (the newest among runs of the same
name), or by itself when its own run folder holds ``checkpoints/last.ckpt`` (requeued by SLURM).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from catdiff.errors import UserError
from catdiff.files import load_user_file

log = logging.getLogger("catdiff.train")


def checkpoint_to_resume(
    ckpt_path: str | None, run_dir: Path, output_root: str, name: str
) -> str | None:
    """The checkpoint this job starts from, or ``None`` (a fresh run)."""
    if ckpt_path == "last":
        found = sorted(
            Path(output_root, name).glob("**/checkpoints/last.ckpt"),
            key=lambda p: p.stat().st_mtime,
        )
        if not found:
            raise UserError(
                f"ckpt_path=last: no checkpoints/last.ckpt under {Path(output_root, name)}; pass ckpt_path=PATH"
            )
        return str(found[-1])
    if ckpt_path:
        if not Path(ckpt_path).is_file():
            raise UserError(f"ckpt_path={ckpt_path} does not exist")
        return ckpt_path
    own_last = run_dir / "checkpoints" / "last.ckpt"
    return str(own_last) if own_last.is_file() else None


def read_checkpoint(ckpt_path: str) -> dict[str, Any]:
    """The checkpoint's contents, memory-mapped, without running code from the file."""
    state = load_user_file(ckpt_path, "ckpt_path", "catdiff checkpoint", mmap=True)
    step = state.get("global_step") if isinstance(state, dict) else None
    if isinstance(step, bool) or not isinstance(step, int):
        raise UserError(f"ckpt_path={ckpt_path} is not a catdiff checkpoint (no global_step)")
    return state


def checkpoint_step(ckpt_path: str) -> int:
    return int(read_checkpoint(ckpt_path)["global_step"])


# The model's shape must match for the weights to load; the process and the data define what
# the network learned (continuing under another schedule silently trains something else).
SHAPE_KEYS = ("model",)
SETUP_KEYS = (
    "diffusion.schedule",
    "diffusion.T",
    "diffusion.objective",
    "diffusion.beta_start",
    "diffusion.beta_end",
    "data.image_size",
    "data.channels",
    "data.edges",
    "data.edge_blur",
)
_NOT_SHAPE = {"dropout"}


def _leaves(node: Any, prefix: str) -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_leaves(value, f"{prefix}.{key}"))
        return out
    return {prefix: node}


def _lookup(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def setup_differences(
    stored: dict[str, Any], current: dict[str, Any]
) -> tuple[list[str], list[str]]:
    """(model-shape differences, other setup differences) as ``key: old -> new`` strings."""

    def differ(keys: tuple[str, ...], skip: set[str]) -> list[str]:
        out = []
        for key in keys:
            old = _leaves(_lookup(stored, key), key)
            new = _leaves(_lookup(current, key), key)
            for leaf in sorted(set(old) | set(new)):
                if leaf.rsplit(".", 1)[-1] in skip or old.get(leaf) == new.get(leaf):
                    continue
                out.append(f"{leaf} {old.get(leaf)!r} -> {new.get(leaf)!r}")
        return out

    return differ(SHAPE_KEYS, _NOT_SHAPE), differ(SETUP_KEYS, set())


def check_same_setup(
    state: dict[str, Any], current: dict[str, Any], ckpt_path: str, allow: bool
) -> None:
    """Refuse to resume under another model shape, or other diffusion or data settings unless
    ``allow`` (``resume_check=false``); one line naming every differing key."""
    stored = (state.get("catdiff") or {}).get("config")
    if not isinstance(stored, dict):
        return  # not written by catdiff's module: Lightning checks the weights itself
    shape, setup = setup_differences(stored, current)
    if shape:
        raise UserError(
            f"ckpt_path={ckpt_path} holds another model: {'; '.join(shape)} "
            "(its weights cannot load into this one: resume with the checkpoint's model settings)"
        )
    if setup and not allow:
        raise UserError(
            f"ckpt_path={ckpt_path} was trained with other settings: {'; '.join(setup)} "
            "(pass them as they were, or resume_check=false to continue under the new ones)"
        )
    if setup:
        log.warning("resuming under changed settings (resume_check=false): %s", "; ".join(setup))


def prepare_resume(
    ckpt_path: str | None, step: int | None, trainer: Any, loggers: Iterable[Any], run_dir: Path
) -> None:
    """Log where this job resumes; CSV loggers in this run folder keep their rows up to ``step``."""
    from catdiff.lightning.loggers import CSVLogger

    if ckpt_path is not None and trainer.is_global_zero:
        log.info("resuming from %s at step %d", ckpt_path, step)
    for logger in loggers:
        if isinstance(logger, CSVLogger) and Path(logger.log_dir).is_relative_to(run_dir):
            logger.resume_step = step  # same folder: keep the history up to the checkpoint


def requeue_if_signalled(callbacks: Iterable[Any], rank: int) -> None:
    """After ``fit``: :meth:`LastCheckpoint.requeue_if_signalled`."""
    from catdiff.lightning.callbacks import LastCheckpoint

    for callback in callbacks:
        if isinstance(callback, LastCheckpoint):
            callback.requeue_if_signalled(rank)
