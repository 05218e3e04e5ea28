"""Whole batches drawn from an in-memory uint8 tensor: one index operation per batch.

Tiny images make per-sample Python (``Dataset.__getitem__`` + collate) the bottleneck of a
``DataLoader``; here a batch is ``images[perm[i:i + B]]``. Shuffling is seeded by
(seed, epoch) so runs repeat; under DDP each rank takes a disjoint stride of one global
permutation (the same on every rank), so no sampler injection is needed.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.utils.data import IterableDataset


def _rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class TensorBatches(IterableDataset):
    """Iterate over ``images`` (N, C, H, W) uint8 in batches of ``batch_size`` (per rank).

    Use with ``DataLoader(TensorBatches(...), batch_size=None)``. ``shuffle`` reshuffles every
    epoch (the caller sets it with :meth:`set_epoch`); ``drop_last`` drops the incomplete final batch so every
    step sees the same batch size (training); validation keeps it.
    """

    def __init__(
        self,
        images: torch.Tensor,
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.images = images
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

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

    def __iter__(self):
        idx = self._indices()
        stop = len(idx) - len(idx) % self.batch_size if self.drop_last else len(idx)
        for i in range(0, stop, self.batch_size):
            yield self.images[idx[i : i + self.batch_size]]
