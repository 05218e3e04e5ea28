"""FID, KID and NLL during training every ``every_n_steps`` (0, the default, is off), with the
EMA weights and the scoring of ``catdiff.evaluate``, so the numbers agree with it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import OmegaConf

from catdiff.config import conf_dir
from catdiff.diffusion.generate import generate
from catdiff.metrics.components import FIDKID
from catdiff.metrics.nll import nll_bpd
from catdiff.metrics.score import score

log = logging.getLogger(__name__)


class PeriodicEvaluation(Callback):
    def __init__(
        self,
        every_n_steps: int = 0,
        n: int = 1000,
        seed: int = 0,
        sampler: Any = None,
        extractor_cache: str = "data/extractors",
        extractor_steps: int = 0,
        nll_timesteps: int = 32,
        nll_images: int = 500,
        batch_size: int = 500,
    ) -> None:
        self.every_n_steps = every_n_steps
        self.n = n
        self.seed = seed
        self.sampler = sampler
        self.extractor_cache = Path(extractor_cache)
        self.extractor_steps = extractor_steps
        self.nll_timesteps = nll_timesteps
        self.nll_images = nll_images
        self.batch_size = batch_size
        self._last_step = -1

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any
    ) -> None:
        step = trainer.global_step
        if self.every_n_steps > 0 and step % self.every_n_steps == 0 and step != self._last_step:
            self._last_step = step
            self.evaluate(trainer, pl_module)

    @rank_zero_only
    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        dm = trainer.datamodule
        data = {"train": dm.train_images, "test": dm.test_images}
        data_cfg = dict(pl_module.run_config.get("data") or {})
        data_cfg.setdefault("edges", getattr(dm, "edges", "none"))
        data_cfg.setdefault("channels", getattr(dm, "channels", 1))
        was_training = pl_module.ema.model.training
        pl_module.ema.model.eval()
        samples, _, _ = generate(
            self.sampler,
            pl_module.ema.model,
            pl_module.diffusion,
            self.n,
            pl_module.image_shape,
            self.seed,
            self.batch_size,
            pl_module.device,
        )
        metrics_cfg = OmegaConf.load(conf_dir() / "evaluate.yaml").metrics
        metrics_cfg.extractor_steps = self.extractor_steps
        fid_kid = FIDKID(metrics_cfg.fid_kid.kid_subsets, metrics_cfg.fid_kid.kid_subset_size)
        scores = score(
            samples,
            data,
            data_cfg,
            [fid_kid],
            "train",
            self.extractor_cache,
            pl_module.device,
            extractor=metrics_cfg,
        )
        logged: dict[str, float] = {}
        for space, fid in scores["fid"].items():
            logged[f"eval/fid_{space}"] = fid
            logged[f"eval/kid_{space}"] = scores["kid"][space]["mean"]
        if self.nll_images > 0 and data["test"] is not None and len(data["test"]):
            nll = nll_bpd(
                pl_module.ema.model,
                pl_module.diffusion,
                data["test"][: self.nll_images],
                mode="sampled",
                timesteps_per_image=self.nll_timesteps,
                seed=self.seed,
                device=pl_module.device,
                progress=False,
            )
            logged["eval/nll_bpd"] = nll.bpd
        pl_module.ema.model.train(was_training)
        for logger in trainer.loggers:
            logger.log_metrics(logged, step=trainer.global_step)
        log.info(
            "evaluation at step %d: %s",
            trainer.global_step,
            ", ".join(f"{k} {v:.4g}" for k, v in logged.items()),
        )
        return logged
