"""Lightning glue: the training step, data module and callbacks. No maths here."""

from catdiff.lightning.datamodule import CatDataModule
from catdiff.lightning.module import DiffusionModule, NonFiniteLossError

__all__ = ["CatDataModule", "DiffusionModule", "NonFiniteLossError"]
