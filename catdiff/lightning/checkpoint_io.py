"""Checkpoints that survive any kill and load without running code.

Lightning's ``TorchCheckpointIO`` writes through an fsspec transaction whose temporary file lies
in ``$TMPDIR``; on a cluster that is a local disk while the run folder is on shared storage, so
the final move is a copy, and a kill during it leaves ``last.ckpt`` truncated with the previous
good one already gone. :class:`AtomicCheckpointIO` writes the temporary file beside the
checkpoint and renames it (:mod:`catdiff.files`), so ``last.ckpt`` and ``best-step*.ckpt`` are
always a complete checkpoint, and a full disk is one line that leaves the previous file in place.

Loading always passes ``weights_only=True``, whatever the caller or the environment asks:
a checkpoint is a file a user hands us, and a pickle can run code.
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
