"""Checkpoints that survive any kill and load without running code.

Lightning's ``TorchCheckpointIO`` writes its temporary file in ``$TMPDIR``: on a cluster the
final move is a copy, and a kill during it truncates ``last.ckpt``. Here it is written beside
the checkpoint and renamed (:mod:`catdiff.files`); loading always passes ``weights_only=True``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from catdiff.files import save_torch


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` with same-folder atomic writes and pickle-free reads (local paths)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or "://" in str(path):  # remote storage: Lightning's way
            return super().save_checkpoint(checkpoint, path, storage_options)
        save_torch(checkpoint, Path(path))

    def load_checkpoint(
        self,
        path: Any,
        map_location: Callable | None = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        return super().load_checkpoint(path, map_location=map_location, weights_only=True)
