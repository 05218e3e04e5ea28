"""Whole batches drawn from an in-memory uint8 tensor: one index operation per batch.

Shuffling is seeded by (seed, epoch); under DDP each rank takes a disjoint share of one
global permutation. ``state_dict()`` (the epoch and the batches handed out, checkpointed by
Lightning) lets a resumed run see exactly the batches an uninterrupted one would have.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import IterableDataset


def _rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class TensorBatches(IterableDataset):
    """Batches of ``batch_size`` uint8 images per rank; hand it to Lightning bare, not in a
    DataLoader. ``shuffle`` reshuffles every epoch (:meth:`set_epoch`)."""

    def __init__(
        self,
        images: torch.Tensor,
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.images, self.batch_size, self.seed = images, batch_size, seed
        self.shuffle, self.drop_last = shuffle, drop_last
        self.epoch = 0
        self.position = 0  # batches of `epoch` handed out so far
        self._start = 0  # where the next iteration begins (set by load_state_dict)

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.position, self._start = epoch, 0, 0

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.position = self._start = int(state["position"])

    def _indices(self) -> torch.Tensor:
        n = len(self.images)
        if not self.shuffle:
            order = torch.arange(n)
        else:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(n, generator=g)
        rank, world = _rank_and_world()
        per_rank = n // world  # equal share per rank keeps DDP ranks in lock-step
        return order[rank * per_rank : (rank + 1) * per_rank] if world > 1 else order

    def __len__(self) -> int:
        _, world = _rank_and_world()
        n = len(self.images) // world
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        start, self._start = self._start, 0
        if start >= len(self):  # saved right after the epoch's last batch: go on with the next
            self.epoch, start = self.epoch + 1, 0
        idx = self._indices()
        stop = len(idx) - len(idx) % self.batch_size if self.drop_last else len(idx)
        for position, i in enumerate(range(0, stop, self.batch_size), start=1):
            if position > start:
                self.position = position  # before yielding: a checkpoint after this batch
                yield self.images[idx[i : i + self.batch_size]]  # resumes after it
