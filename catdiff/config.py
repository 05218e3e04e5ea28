"""Hydra/OmegaConf glue shared by the entry points: resolvers and config-to-object helpers."""

from __future__ import annotations

import os
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from catdiff.errors import UserError
from catdiff.lightning.datamodule import data_channels


def _wandb_offline() -> bool:
    """W&B logs offline (to files in the run folder) unless an API key is configured."""
    return not os.environ.get("WANDB_API_KEY")


def register_resolvers() -> None:
    """Resolvers used in conf/: ``${data_channels:C,edges}`` and ``${wandb_offline:}``."""
    if not OmegaConf.has_resolver("data_channels"):
        OmegaConf.register_new_resolver("data_channels", lambda c, e: data_channels(int(c), str(e)))
    if not OmegaConf.has_resolver("wandb_offline"):
        OmegaConf.register_new_resolver("wandb_offline", _wandb_offline)


register_resolvers()


def build(node: DictConfig, key: str, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` that lets a :class:`UserError` through unwrapped, so a bad
    value gives its one-line message; other failures name the config key that built them."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        while cause is not None and not isinstance(cause, UserError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        if isinstance(e.__cause__, TypeError | ValueError):  # e.g. an unknown or mistyped argument
            raise UserError(f"bad config under `{key}`: {e.__cause__}") from e
        raise


def to_plain(cfg: DictConfig) -> dict:
    """The resolved config as plain Python containers (safe for ``torch.load(weights_only=True)``)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
