"""CatDataModule: images decoded once into a uint8 tensor in memory, batches drawn whole.

Sources (``data.source``): ``catfaces`` (Kaggle cat faces: data.root, $CATDIFF_DATA_ROOT, or a
one-time kagglehub download), ``folder`` (any tree of images under data.root) and ``synthetic``
(procedural cat sketches, offline). Exact duplicates are dropped before the split, which is by
content hash, so no image is in both train and val. Scaling to [-1, 1] and the random
horizontal flip run on whole batches on the training device.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from catdiff.data import (
    apply_edges,
    drop_duplicates,
    load_folder,
    resolve_catfaces_root,
    split_by_hash,
    synthetic_cats,
)
from catdiff.data.batches import TensorBatches
from catdiff.errors import UserError

log = logging.getLogger(__name__)

SOURCES = ("catfaces", "folder", "synthetic")


def data_channels(channels: int, edges: str) -> int:
    """Channels the model sees: the image's, or 1 for Sobel edges, or 2 for gray + edges."""
    return {"sobel": 1, "sobel+gray": 2}.get(edges, channels)


class CatDataModule(L.LightningDataModule):
    """Cat images as uint8 tensors (N, C, H, W); batches arrive as float in [-1, 1].

    Args:
        source: one of ``catfaces``, ``folder``, ``synthetic``.
        root: folder of images (``folder``; optional for ``catfaces``).
        data_dir: where downloads go.
        image_size: side of the square images the model sees (28 in the seed).
        channels: 1 (grayscale, the seed) or 3 (RGB).
        edges: ``none``, ``sobel`` (edge magnitude replaces the image) or ``sobel+gray``.
        edge_blur: Gaussian blur sigma (pixels) before Sobel; 0 = none.
        resample: resize filter (``bicubic``, ``bilinear``, ``lanczos``, ``nearest``, ``box``).
        flip: random horizontal flip of training batches.
        val_fraction: share of distinct images held out for validation (by content hash).
        batch_size: images per step per device.
        synthetic_n: how many sketches ``synthetic`` draws.
        seed: shuffling seed (the order repeats for a given seed and epoch).
    """

    def __init__(
        self,
        source: str = "catfaces",
        root: str | None = None,
        data_dir: str = "data",
        image_size: int = 28,
        channels: int = 1,
        edges: str = "none",
        edge_blur: float = 0.0,
        resample: str = "bicubic",
        flip: bool = True,
        val_fraction: float = 0.05,
        batch_size: int = 128,
        synthetic_n: int = 2000,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if source not in SOURCES:
            raise UserError(f"data.source={source!r} is not one of {', '.join(SOURCES)}")
        if edges != "none" and channels != 1:
            raise UserError(f"data.edges={edges} works on grayscale: set data.channels=1")
        self.source = source
        self.root = root
        self.data_dir = data_dir
        self.image_size = image_size
        self.channels = channels
        self.edges = edges
        self.edge_blur = edge_blur
        self.resample = resample
        self.flip = flip
        self.val_fraction = val_fraction
        self.batch_size = batch_size
        self.synthetic_n = synthetic_n
        self.seed = seed
        self.train_images: torch.Tensor | None = None
        self.val_images: torch.Tensor | None = None
        self._train_batches: TensorBatches | None = None

    @property
    def out_channels(self) -> int:
        return data_channels(self.channels, self.edges)

    # ------------------------------------------------------------------ loading
    def _load(self) -> tuple[torch.Tensor, list[str], str]:
        """Distinct uint8 images, their content keys, and a one-line report of what was found."""
        if self.source == "synthetic":
            images, keys, dropped = drop_duplicates(
                synthetic_cats(self.synthetic_n, self.image_size, seed=self.seed)
            )
            return (
                images,
                keys,
                f"data=synthetic: {self.synthetic_n} procedural cat sketches, {len(images)} distinct",
            )
        if self.source == "catfaces":
            root = resolve_catfaces_root(self.root, self.data_dir)
        elif not self.root:
            raise UserError("data=folder needs data.root=PATH (a folder of cat images)")
        else:
            root = Path(self.root)
        images, keys, report = load_folder(
            root, self.image_size, self.channels, self.resample, progress=True
        )
        if report.unreadable:
            log.warning("skipped %d unreadable files: %s", report.unreadable, report)
        return images, keys, str(report)

    def setup(self, stage: str | None = None) -> None:
        if self.train_images is not None:
            return
        images, keys, found = self._load()
        split = split_by_hash(keys, val_fraction=self.val_fraction)
        train, val = images[split["train"]], images[split["val"]]
        if len(train) < self.batch_size:
            where = f"data.root={self.root}" if self.root else f"data={self.source}"
            raise UserError(
                f"{where} has {len(train)} training images, fewer than one batch "
                f"(data.batch_size={self.batch_size}): add images or lower data.batch_size"
            )
        if self.edges != "none":
            train = apply_edges(train, self.edges, blur_sigma=self.edge_blur)
            val = apply_edges(val, self.edges, blur_sigma=self.edge_blur)
        self.train_images, self.val_images = train.contiguous(), val.contiguous()
        log.info(
            "%s; train %d, val %d, each %s", found, len(train), len(val), tuple(train.shape[1:])
        )

    # -------------------------------------------------------------- dataloaders
    def set_epoch(self, epoch: int) -> None:
        if self._train_batches is not None:
            self._train_batches.set_epoch(epoch)

    def train_dataloader(self) -> DataLoader:
        self._train_batches = TensorBatches(
            self.train_images, self.batch_size, shuffle=True, drop_last=True, seed=self.seed
        )
        return DataLoader(self._train_batches, batch_size=None)

    def val_dataloader(self) -> DataLoader:
        batches = TensorBatches(self.val_images, self.batch_size, shuffle=False, drop_last=False)
        return DataLoader(batches, batch_size=None)

    def on_after_batch_transfer(self, batch: torch.Tensor, dataloader_idx: int) -> torch.Tensor:
        """uint8 batch on the device -> float in [-1, 1], randomly flipped while training."""
        x = batch.float().div_(127.5).sub_(1.0)
        if self.flip and self.trainer is not None and self.trainer.training:
            flip = torch.rand(x.shape[0], device=x.device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return x
