"""Pure-torch networks: the DDPM UNet, its building blocks, and the weight EMA."""

from catdiff.models.ema import EMA
from catdiff.models.unet import UNet, count_parameters

__all__ = ["EMA", "UNet", "count_parameters"]
