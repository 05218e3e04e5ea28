"""CatDataModule: images decoded once into a uint8 tensor in memory, batches drawn whole.

The sources, the decode cache and the split by content hash are in :mod:`catdiff.data`;
scaling to [-1, 1] and the random horizontal flip run on whole batches on the device.
"""

from __future__ import annotations

import logging

import lightning as L
import torch

from catdiff.data import SOURCES, LoadedImages, LoadReport, apply_edges, load_source, split_loaded
from catdiff.data.batches import TensorBatches
from catdiff.data.edges import EDGE_MODES, data_channels
from catdiff.errors import UserError

log = logging.getLogger(__name__)


class CatDataModule(L.LightningDataModule):
    """Cat images as uint8 tensors (N, C, H, W); batches arrive as float in [-1, 1].

    The arguments are the ``data.*`` keys (conf/data/); ``cache_dir`` None or "" turns the
    decode cache off, ``seed`` fixes the shuffling order of each epoch.
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
        test_fraction: float = 0.05,
        crop: str = "center",
        include: str | list[str] | None = None,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        if source not in SOURCES:
            raise UserError(f"data.source={source!r} is not one of {', '.join(SOURCES)}")
        if edges not in EDGE_MODES:
            raise UserError(f"data.edges={edges!r} is not one of {', '.join(EDGE_MODES)}")
        if edges != "none" and channels != 1:
            raise UserError(f"data.edges={edges} works on grayscale: set data.channels=1")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise UserError(f"data.batch_size={batch_size} must be a positive integer, e.g. 128")
        self.source = source
        self.root = root
        self.data_dir = data_dir
        self.image_size = image_size
        self.channels = channels
        self.edges = edges
        self.edge_blur = edge_blur
        self.resample = resample
        self.crop = crop
        self.include = (
            list(include) if include is not None and not isinstance(include, str) else include
        )
        self.flip = flip
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.batch_size = batch_size
        self.synthetic_n = synthetic_n
        self.seed = seed
        self.cache_dir = cache_dir
        self.train_images: torch.Tensor | None = None
        self.val_images: torch.Tensor | None = None
        self.test_images: torch.Tensor | None = None
        self.report: LoadReport | None = None
        self._loaded: LoadedImages | None = None
        self._train_batches: TensorBatches | None = None

    @property
    def out_channels(self) -> int:
        return data_channels(self.channels, self.edges)

    # ------------------------------------------------------------------ loading
    def _load(self) -> LoadedImages:
        return load_source(
            self.source,
            root=self.root,
            data_dir=self.data_dir,
            image_size=self.image_size,
            channels=self.channels,
            resample=self.resample,
            crop=self.crop,
            include=self.include,
            cache_dir=self.cache_dir,
            synthetic_n=self.synthetic_n,
            seed=self.seed,
            progress=True,
        )

    def prepare_data(self) -> None:
        """Download and decode into the cache on one process per node (kept in memory)."""
        if self.train_images is None and self._loaded is None:
            self._loaded = self._load()

    def setup(self, stage: str | None = None) -> None:
        if self.train_images is not None:
            return
        loaded, self._loaded = self._loaded or self._load(), None
        splits = split_loaded(loaded, self.val_fraction, self.test_fraction)
        train, val, test = splits["train"], splits["val"], splits["test"]
        report = loaded.report
        if len(train) < self.batch_size:
            where = f"data.root={report.root}" if report.root else f"data={self.source}"
            raise UserError(
                f"{where} has {len(train)} training images, fewer than one batch "
                f"(data.batch_size={self.batch_size}): add images, lower data.batch_size, "
                "or point data.root=PATH at a larger folder"
            )
        if len(val) == 0 and self.val_fraction > 0:
            log.warning(
                "data.val_fraction=%s left no validation images (%d distinct in all): "
                "validation losses will be missing; add images or raise data.val_fraction",
                self.val_fraction,
                report.distinct,
            )
        if self.edges != "none":
            train, val, test = (
                apply_edges(x, self.edges, blur_sigma=self.edge_blur) for x in (train, val, test)
            )
        self.train_images, self.val_images, self.test_images = train, val, test
        self.report = report
        log.info("%s; each image %s", report, tuple(train.shape[1:]))

    # -------------------------------------------------------------- dataloaders
    def set_epoch(self, epoch: int) -> None:
        if self._train_batches is not None:
            self._train_batches.set_epoch(epoch)

    # Bare iterables, not DataLoaders: a DataLoader would hide their state_dict (a resumed run
    # would restart the epoch) and draw from the global RNG at every iter().
    def train_dataloader(self) -> TensorBatches:
        self._train_batches = TensorBatches(
            self.train_images, self.batch_size, shuffle=True, drop_last=True, seed=self.seed
        )
        return self._train_batches

    def val_dataloader(self) -> TensorBatches:
        return TensorBatches(self.val_images, self.batch_size, shuffle=False, drop_last=False)

    def on_after_batch_transfer(self, batch: torch.Tensor, dataloader_idx: int) -> torch.Tensor:
        """uint8 batch on the device -> float in [-1, 1], randomly flipped while training."""
        x = batch.float().div_(127.5).sub_(1.0)
        if self.flip and self.trainer is not None and self.trainer.training:
            flip = torch.rand(x.shape[0], device=x.device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return x
