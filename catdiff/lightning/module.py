"""DiffusionModule: the training loop as Lightning glue (the maths is in catdiff.diffusion).

Validation uses fixed noise and t (seeded by batch index), so the curve measures the model,
not the draw. A step's t and noise come from a generator seeded by (seed, rank, step) and the
global RNG (random flips) is checkpointed, so a resumed run repeats the losses of one that
never stopped.
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
    """Train ``model`` (``model(x_t, t) -> prediction``) to reverse ``diffusion``; sample and
    validate with an EMA copy. ``optimizer(params)`` and ``lr_scheduler(optimizer,
    total_steps)`` (stepped every step) are partials from the config; ``run_config`` goes into
    every checkpoint so ``catdiff.sample`` can rebuild the model; ``compile`` trains through
    ``torch.compile`` (the EMA, checkpoints and sampling use the plain model); ``consistency``
    (a :class:`catdiff.diffusion.consistency.ConsistencyTuning`) trains by ECT's loss instead
    of the diffusion loss, its stage set by the step (validation still reports the latter).
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
        self._total_steps = 0  # set when training starts: the steps ECT's stages divide
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
        """Per-sample losses (B,) and timesteps t (B,) for x0 in [-1, 1]; ``stratified``
        spreads t evenly over [0, T) (one random offset), so every bucket is scored."""
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
        """This step's generator, from (seed, rank, step): resuming needs no generator state."""
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
            stage = self.consistency.stage(self.global_step, self._total_steps)
            self.log("train/stage", float(stage), on_step=True, on_epoch=False)
            loss = self.consistency.loss_per_sample(
                self._train_net(), self.diffusion, batch, stage, generator
            ).mean()
        # Stops the run before a NaN gradient reaches the weights: the last checkpoint stays good.
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"training loss became {loss.item()} at step {self.global_step}: "
                "lower optimizer.lr, or use diffusion.loss=huber; the last good checkpoint is kept"
            )
        distributed = self.trainer.world_size > 1  # log the mean over ranks
        self.log(
            "train/loss", loss, prog_bar=True, on_step=True, on_epoch=False, sync_dist=distributed
        )
        return loss

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        # Not in on_train_batch_end: checkpoint callbacks run before it.
        super().optimizer_step(*args, **kwargs)
        self.ema.update(self.model)

    def on_train_start(self) -> None:
        self._total_steps = int(self.trainer.estimated_stepping_batches)  # ECT's stages
        # Right before the first batch: nothing else draws from the restored RNG.
        if self._rng_to_restore is not None:
            torch.set_rng_state(self._rng_to_restore["torch"])
            cuda = self._rng_to_restore.get("cuda")
            if cuda is not None and self.device.type == "cuda":
                torch.cuda.set_rng_state(cuda, self.device)
            self._rng_to_restore = None

    def on_train_end(self) -> None:
        self._check_ema_identical_across_ranks()

    def _check_ema_identical_across_ranks(self) -> None:
        """Under DDP the EMA must be bitwise identical on every rank: checked once at the end."""
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
        # The global RNG draws the random flips, the same amount on every rank.
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        checkpoint["rng"] = rng

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._rng_to_restore = checkpoint.get("rng")
