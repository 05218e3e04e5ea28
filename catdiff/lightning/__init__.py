"""Lightning glue: the training step, data module and callbacks. No maths here."""

from catdiff.lightning.datamodule import CatDataModule, data_channels
from catdiff.lightning.module import DiffusionModule, NonFiniteLossError

__all__ = ["CatDataModule", "DiffusionModule", "NonFiniteLossError", "data_channels"]
