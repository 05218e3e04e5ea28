"""DiffusionModule: the training loop of the seed's notes, as Lightning glue (no maths here).

Each step: draw t uniformly, noise x_0 with q_sample, predict with the UNet, take the loss of
the configured objective (diffusion/gaussian.py). Validation uses fixed noise and t (seeded by
batch index) so the curve measures the model, not the draw, and splits the loss into
timestep buckets. Sampling uses the EMA weights, which are stored in every checkpoint.

Randomness is resumable: t and the noise of a training step come from a generator seeded by
(seed, rank, step), and the global RNG (random flips) is saved in checkpoints, so a run that
resumes from a checkpoint repeats the losses of one that never stopped (on CPU, exactly).
Under DDP every rank draws its own t and noise; the weights, and so the EMA, stay identical.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
from torch import nn

from catdiff.diffusion import GaussianDiffusion, SampleResult, sample
from catdiff.diffusion.consistency import ConsistencyTuning
from catdiff.models import EMA

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or inf; raised before the bad gradient reaches the weights."""


class DiffusionModule(L.LightningModule):
    """Train ``model`` to reverse ``diffusion``; sample with an EMA copy of it.

    Args:
        model: network ``model(x_t, t) -> prediction`` of the diffusion's objective.
        diffusion: the Gaussian process (schedule, objective, loss).
        optimizer: partial ``optimizer(params) -> torch.optim.Optimizer`` (from config).
        lr_scheduler: partial ``fn(optimizer, total_steps) -> LRScheduler`` stepped every step, or None.
        ema_decay: EMA decay; the weights used for sampling and val loss.
        ema_warmup: ramp the decay as (1 + n) / (10 + n) early on, so EMA tracks fresh weights.
        sampler: default sampler for :meth:`sample` (e.g. DDPMSampler()).
        val_buckets: validation loss is also logged per bucket of t (``val/loss_t<k>``).
        image_shape: (C, H, W) of samples.
        run_config: the run's resolved config (plain dict), written into every checkpoint so
            ``catdiff.sample`` can rebuild the model without the original config files.
        seed: seeds the per-step draws of t and noise (with the rank and the step).
        compile: train through ``torch.compile(model)`` (``module.compile``); checkpoints, the
            EMA and sampling keep using the plain model.
        consistency: train by ECT's consistency loss instead of the diffusion loss
            (``module.consistency``, :class:`catdiff.diffusion.consistency.ConsistencyTuning`),
            its stage set by the step; validation still reports the diffusion loss.
        channels_last: keep the network in the ``channels_last`` memory format
            (``module.channels_last``, see :func:`catdiff.precision.auto_channels_last`): same
            maths, another layout for oneDNN's convolutions; checkpoints load into either.
    """

    def __init__(
        self,
        model: nn.Module,
        diffusion: GaussianDiffusion,
        optimizer: Callable[..., torch.optim.Optimizer],
        lr_scheduler: Callable[..., Any] | None = None,
        ema_decay: float = 0.999,
        ema_warmup: bool = True,
        sampler: Callable[..., SampleResult] | None = None,
        val_buckets: int = 10,
        image_shape: Sequence[int] = (1, 28, 28),
        run_config: dict | None = None,
        seed: int = 0,
        compile: bool = False,
        channels_last: bool = False,
        consistency: ConsistencyTuning | None = None,
    ) -> None:
        super().__init__()
        self.consistency = consistency
        self.channels_last = bool(channels_last)
        if self.channels_last:  # before the EMA copy, so both share the layout
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.compile = bool(compile)
        # Not a submodule: the compiled wrapper shares model's parameters, and registering it
        # would add a second copy of every key to the state_dict.
        self.__dict__["_compiled_model"] = None
        self.diffusion = diffusion
        self.ema = EMA(model, decay=ema_decay, warmup=ema_warmup)
        self.optimizer_fn = optimizer
        self.lr_scheduler_fn = lr_scheduler
        self.sampler = sampler
        self.val_buckets = val_buckets
        self.image_shape = tuple(int(s) for s in image_shape)
        self.run_config = run_config or {}
        self.seed = int(seed)
        self._val_sums: dict[str, torch.Tensor] = {}
        self._rng_to_restore: dict[str, Any] | None = None

    # ------------------------------------------------------------------ training
    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.model(x_t, t)

    def _losses(
        self,
        net: nn.Module,
        x0: torch.Tensor,
        generator: torch.Generator | None = None,
        stratified: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample losses (B,) and their timesteps t (B,) for clean images x0 in [-1, 1].

        ``stratified`` spreads t evenly over [0, T) across the batch (one random offset), so
        every timestep bucket is scored even on a small validation set.
        """
        if stratified:
            n, T = x0.shape[0], self.diffusion.T
            offset = torch.rand((), generator=generator, device=x0.device)
            t = ((torch.arange(n, device=x0.device) + offset) * T / n).long().clamp_(max=T - 1)
        else:
            t = self.diffusion.sample_timesteps(x0.shape[0], x0.device, generator=generator)
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x_t = self.diffusion.q_sample(x0, t, noise)
        prediction = net(x_t, t)
        return self.diffusion.loss_per_sample(prediction.float(), x0, t, noise), t

    def _step_generator(self, device: torch.device) -> torch.Generator:
        """The generator for this step's t and noise: a pure function of (seed, rank, step), so
        resuming needs no generator state and DDP ranks draw different noise."""
        world, rank = self.trainer.world_size, self.trainer.global_rank
        key = (self.seed * 1_000_003 + self.global_step) * world + rank
        return torch.Generator(device=device).manual_seed(key)

    def _train_net(self) -> nn.Module:
        if not self.compile:
            return self.model
        if self.__dict__["_compiled_model"] is None:
            self.__dict__["_compiled_model"] = torch.compile(self.model)
        return self.__dict__["_compiled_model"]

    def load_teacher(self, weights: dict[str, torch.Tensor]) -> None:
        """Start from a trained model's weights (``teacher=``): the network and its EMA."""
        self.model.load_state_dict(weights)
        self.ema.model.load_state_dict(weights)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        generator = self._step_generator(batch.device)
        if self.consistency is None:
            loss = self._losses(self._train_net(), batch, generator=generator)[0].mean()
        else:
            total = int(self.trainer.estimated_stepping_batches)
            stage = self.consistency.stage(self.global_step, total)
            self.log("train/stage", float(stage), on_step=True, on_epoch=False)
            loss = self.consistency.loss_per_sample(
                self._train_net(), self.diffusion, batch, stage, generator
            ).mean()
        # One host sync per step; on CPU it is free, and it stops the run before a NaN
        # gradient reaches the weights, so the last checkpoint on disk stays good.
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"training loss became {loss.item()} at step {self.global_step}: "
                "lower optimizer.lr, or use diffusion.loss=huber; the last good checkpoint is kept"
            )
        # Under DDP the logged loss is the mean over ranks (one scalar all-reduce per step).
        distributed = self.trainer.world_size > 1
        self.log(
            "train/loss", loss, prog_bar=True, on_step=True, on_epoch=False, sync_dist=distributed
        )
        return loss

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        # Here, not in on_train_batch_end: callbacks (checkpoints) run before that hook, and
        # the EMA must have seen every optimizer step that a saved state includes.
        super().optimizer_step(*args, **kwargs)
        self.ema.update(self.model)

    def on_train_start(self) -> None:
        # Restored here, after Lightning's own setup and right before the first batch, so
        # nothing between loading the checkpoint and training draws from the restored RNG.
        if self._rng_to_restore is not None:
            torch.set_rng_state(self._rng_to_restore["torch"])
            cuda = self._rng_to_restore.get("cuda")
            if cuda is not None and self.device.type == "cuda":
                torch.cuda.set_rng_state(cuda, self.device)
            self._rng_to_restore = None

    def on_train_end(self) -> None:
        self._check_ema_identical_across_ranks()

    def _check_ema_identical_across_ranks(self) -> None:
        """DDP keeps the weights identical on every rank, hence the EMA; check it (bitwise)
        once at the end, so a rank that drifted cannot go unnoticed in the checkpoint."""
        if self.trainer.world_size == 1:
            return
        mine = torch.cat([p.detach().flatten().float() for p in self.ema.model.parameters()])
        everyone = [torch.empty_like(mine) for _ in range(self.trainer.world_size)]
        torch.distributed.all_gather(everyone, mine)
        if not all(torch.equal(everyone[0], row) for row in everyone[1:]):
            raise RuntimeError("EMA weights differ between DDP ranks")
        if self.trainer.is_global_zero:
            log.info(
                "EMA weights identical on all %d ranks (%d values)",
                self.trainer.world_size,
                mine.numel(),
            )

    def on_train_epoch_start(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "set_epoch"):
            datamodule.set_epoch(self.current_epoch)

    # ---------------------------------------------------------------- validation
    def on_validation_epoch_start(self) -> None:
        zeros = torch.zeros(self.val_buckets, device=self.device, dtype=torch.float64)
        self._val_sums = {"ema": zeros.clone(), "raw": zeros.clone(), "count": zeros.clone()}

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        # The same noise and t for a given batch at every validation: curves compare models.
        for name, net in (("ema", self.ema.model), ("raw", self.model)):
            generator = torch.Generator(device=batch.device).manual_seed(10_007 + batch_idx)
            losses, t = self._losses(net, batch, generator=generator, stratified=True)
            bucket = (t * self.val_buckets) // self.diffusion.T
            self._val_sums[name].index_add_(0, bucket, losses.double())
        self._val_sums["count"].index_add_(0, bucket, torch.ones_like(losses, dtype=torch.float64))

    def on_validation_epoch_end(self) -> None:
        sums = {
            k: self.trainer.strategy.reduce(v, reduce_op="sum") for k, v in self._val_sums.items()
        }
        count = sums["count"]
        if count.sum() == 0:
            return
        metrics = {
            "val/loss": sums["ema"].sum() / count.sum(),
            "val/loss_raw": sums["raw"].sum() / count.sum(),
        }
        for k in range(self.val_buckets):
            if count[k] > 0:
                metrics[f"val/loss_t{k}"] = sums["ema"][k] / count[k]
        # Sums were already reduced over ranks above, so no further sync here.
        self.log("val/loss", metrics.pop("val/loss").float(), prog_bar=True)
        self.log_dict({k: v.float() for k, v in metrics.items()})

    # ---------------------------------------------------------------- optimiser
    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_fn(params=self.model.parameters())
        if self.lr_scheduler_fn is None:
            return optimizer
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = self.lr_scheduler_fn(optimizer, total_steps=total)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    # ----------------------------------------------------------------- sampling
    @torch.inference_mode()
    def sample(
        self,
        n: int,
        seed: int = 0,
        sampler: Callable[..., SampleResult] | None = None,
        record: Sequence[int] = (),
        progress: bool = False,
    ) -> SampleResult:
        """Draw ``n`` images with the EMA weights; the same seed gives the same images."""
        sampler = sampler or self.sampler
        if sampler is None:
            raise ValueError("no sampler: pass one, or set module.sampler in the config")
        was_training = self.ema.model.training
        self.ema.model.eval()
        try:
            return sample(
                sampler,
                self.ema.model,
                self.diffusion,
                n,
                self.image_shape,
                seed=seed,
                device=self.device,
                record=record,
                progress=progress,
            )
        finally:
            self.ema.model.train(was_training)

    # -------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["catdiff"] = {"config": self.run_config, "image_shape": list(self.image_shape)}
        # The global RNG draws the random flips; every rank draws the same amount, so rank
        # 0's state is every rank's. (t and noise need no state: see _step_generator.)
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        checkpoint["rng"] = rng

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._rng_to_restore = checkpoint.get("rng")
