"""Train a DDPM on cat faces: ``python -m catdiff.train [experiment=NAME] [key=value ...]``.

Thin on purpose: compose the config (conf/train.yaml), build the data, model, diffusion,
callbacks, loggers and trainer from it, fit, and print where the run folder is. An
experiment file that sets ``hydra.mode: MULTIRUN`` runs its whole sweep from this one command
(no ``-m``); each member is one call of :func:`train`.

Mistakes in the config (an unknown key, a wrong type, an experiment that does not exist, a
bad value) stop before any training with one line on stderr that names the key, and exit
code 2; ``HYDRA_FULL_ERROR=1`` shows the full trace instead.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import hydra
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    MissingMandatoryValue,
    OmegaConfBaseException,
)

from catdiff.allocator import describe as describe_allocator
from catdiff.allocator import keep_freed_memory
from catdiff.config import (
    build,
    check_devices,
    check_override_types,
    resolve_channels_last,
    run_identity,
    to_plain,
)
from catdiff.errors import UserError

log = logging.getLogger("catdiff.train")


def choose_omp_wait_policy(trainer: DictConfig) -> None:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` when this run shares the cores with other processes.

    Idle OpenMP threads spin for a while before they sleep (libgomp's default). Where other
    processes need the cores (DDP ranks, the members of a ``hydra/launcher=local`` sweep) the
    spinning made a step ~6x slower on 2 cores, so there they sleep at once. A run with the
    cores to itself is faster spinning: on this project's 2-core AMD EPYC a default-model
    training step took 0.90-0.95 s (bf16) and 1.53-1.59 s (fp32) with the default against
    0.98-1.03 s and 1.90-2.03 s with PASSIVE. A value the user set is kept. It must be set
    before torch loads OpenMP (torch is imported lazily, in train()); DDP ranks inherit it.
    """
    if "OMP_WAIT_POLICY" in os.environ:
        return
    alone = (
        trainer.get("devices", 1) == 1
        and trainer.get("num_nodes", 1) == 1
        and "SUBMITIT_FOLDER" not in os.environ  # a sweep member: others may run beside it
    )
    if not alone:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


# Lightning warnings that do not apply here: whole-batch iterables know their length exactly
# (no workers), the EMA copy is in eval mode on purpose, a torch deprecation, and the hint to
# use srun on a machine that has SLURM installed but runs this job outside it.
for message in (
    r".*IterableDataset. has .__len__. defined",
    r".*module\(s\) in eval mode",
    r".*LeafSpec",
    r".*The .srun. command is available",
    r".*does not have many workers",
    r".*It is recommended to use .self.log\('val/",  # val sums are all-reduced before logging
):
    warnings.filterwarnings("ignore", message=message)


class TrainingDiverged(RuntimeError):
    """The loss went non-finite; the message names the run folder with the last good checkpoint."""


def resolve_ckpt_path(ckpt_path: str | None, output_root: str, name: str) -> str | None:
    """``None``, a checkpoint file, or ``last``: the newest ``last.ckpt`` among runs named ``name``."""
    if not ckpt_path:
        return None
    if ckpt_path == "last":
        found = sorted(
            Path(output_root, name).glob("**/checkpoints/last.ckpt"),
            key=lambda p: p.stat().st_mtime,
        )
        if not found:
            raise UserError(
                f"ckpt_path=last: no checkpoints/last.ckpt under {Path(output_root, name)}; pass ckpt_path=PATH"
            )
        return str(found[-1])
    if not Path(ckpt_path).is_file():
        raise UserError(f"ckpt_path={ckpt_path} does not exist")
    return ckpt_path


def _build_loggers(cfg: DictConfig) -> list[Any]:
    loggers = []
    for key, node in (cfg.get("logger") or {}).items():
        if node is None:
            continue
        extra: dict[str, Any] = {}
        if str(node.get("_target_", "")).endswith("WandbLogger"):
            os.environ.setdefault("WANDB_SILENT", "true")  # no banner on stderr
            identity = run_identity(cfg)
            extra = {k: v for k, v in identity.items() if node.get(k) is None}
        loggers.append(build(node, f"logger.{key}", **extra))
    return loggers


def _finish_wandb(loggers: list[Any], failed: bool) -> None:
    """End the W&B run: one process runs every member of a local sweep, and an unfinished run
    would swallow the next member's metrics."""
    if not any(type(lg).__name__ == "WandbLogger" for lg in loggers):
        return
    import wandb

    if wandb.run is not None:
        wandb.finish(exit_code=1 if failed else 0)


def _summary(trainer: Any, metrics: dict[str, float], seconds: float) -> dict[str, Any]:
    """The final numbers of the run: last metrics, best validation loss, steps, images, time."""
    summary: dict[str, Any] = {f"final/{k}": v for k, v in metrics.items()}
    best = getattr(trainer.checkpoint_callback, "best_model_score", None)
    if best is not None:
        summary["best/val_loss"] = float(best)
    summary["global_step"] = int(trainer.global_step)
    summary["world_size"] = int(trainer.world_size)
    summary["wall_time_s"] = round(seconds, 1)
    return summary


def _file_logs_on_rank_zero_only() -> None:
    """Under SLURM every DDP rank is a task that runs this job, Hydra's log file included:
    ranks > 0 log to the console only, so train.log is rank 0's (the subprocess launcher in
    catdiff/lightning/ddp.py does the same for the ranks it starts)."""
    if int(os.environ.get("SLURM_PROCID", "0")) > 0:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
            root.removeHandler(handler)


def train(cfg: DictConfig) -> dict[str, float]:
    """Run one training job described by ``cfg``; returns the final logged metrics."""
    choose_omp_wait_policy(cfg.trainer)
    keep_freed_memory()  # before the first activations are allocated
    _file_logs_on_rank_zero_only()
    log.info("allocator: %s", describe_allocator())
    check_override_types(cfg)
    check_devices(cfg.trainer)
    if cfg.trainer.precision == "auto":  # resolved here so config.yaml and checkpoints record it
        from catdiff.lightning.precision import auto_precision

        cfg.trainer.precision = auto_precision(cfg.trainer.accelerator)
    resolve_channels_last(cfg)
    run_dir = Path(cfg.paths.run_dir)
    ckpt_path = resolve_ckpt_path(cfg.ckpt_path, cfg.paths.output_root, cfg.name)
    own_last = run_dir / "checkpoints" / "last.ckpt"
    if ckpt_path is None and own_last.is_file():
        # This run folder already trained: SLURM requeued the job after a preemption or a
        # time limit (same sweep member, same folder). Go on from where it stopped.
        ckpt_path = str(own_last)

    import lightning as L
    import torch
    from lightning.pytorch.callbacks import LearningRateMonitor

    from catdiff.lightning.callbacks import LastCheckpoint
    from catdiff.lightning.loggers import CSVLogger
    from catdiff.lightning.module import NonFiniteLossError

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision("high")

    datamodule = build(cfg.data, "data")
    model = build(cfg.model, "model")
    diffusion = build(cfg.diffusion, "diffusion")
    sampler = build(cfg.sampler, "sampler")
    image_shape = (datamodule.out_channels, cfg.data.image_size, cfg.data.image_size)
    module = build(
        cfg.module,
        "module",
        model=model,
        diffusion=diffusion,
        sampler=sampler,
        image_shape=image_shape,
    )
    # Set after building: instantiate() would try to build the _target_ entries inside it.
    module.run_config = to_plain(cfg)
    loggers = _build_loggers(cfg)
    callbacks = [build(c, f"callbacks.{k}") for k, c in cfg.callbacks.items() if c is not None]
    if not loggers:  # logger=none: LearningRateMonitor refuses to run without a logger
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer = build(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers or False)

    resume_step = None
    if ckpt_path is not None:
        try:
            resume_step = int(torch.load(ckpt_path, map_location="cpu", mmap=True)["global_step"])
        except Exception as e:
            raise UserError(f"ckpt_path={ckpt_path} is not a catdiff checkpoint ({e})") from e
        if trainer.is_global_zero:
            log.info("resuming from %s at step %d", ckpt_path, resume_step)
    for logger in loggers:
        if isinstance(logger, CSVLogger) and Path(logger.log_dir).is_relative_to(run_dir):
            logger.resume_step = resume_step  # same folder: keep the history up to the checkpoint

    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
        hparams = {
            **to_plain(cfg),
            "world_size": trainer.world_size,
            "global_batch_size": cfg.data.batch_size * trainer.world_size,
        }
        for logger in loggers:
            logger.log_hyperparams(hparams)

    started = time.perf_counter()
    failed = True
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        if trainer.is_global_zero and trainer.global_step != resume_step:  # it trained
            summary = _summary(trainer, metrics, time.perf_counter() - started)
            (run_dir / "metrics.json").write_text(json.dumps(summary, indent=1) + "\n")
            for logger in loggers:
                if type(logger).__name__ == "WandbLogger":
                    logger.experiment.summary.update(summary)
        failed = False
    except NonFiniteLossError as e:
        raise TrainingDiverged(f"{e} (run folder: {run_dir})") from None
    finally:
        _finish_wandb(loggers, failed)

    for callback in callbacks:
        if isinstance(callback, LastCheckpoint):  # preempted: requeue and exit here
            callback.requeue_if_signalled(trainer.global_rank)
    if trainer.is_global_zero:
        print(f"run folder: {run_dir}  (checkpoints/last.ckpt, samples/, config.yaml)")
    return metrics


_FULL_TRACE = False  # HYDRA_FULL_ERROR=1 was set by the user (cli() sets it for itself)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        return train(cfg).get("val/loss")  # what a sweep would optimise
    except (UserError, OmegaConfBaseException) as e:
        # A config mistake: one line and exit 2, here, before Hydra adds its own report. A
        # sweep stops at its first bad member. Under submitit the error goes back to the sweep
        # (submitit records it) instead: exiting there would leave the job without a result.
        if _FULL_TRACE or "SUBMITIT_FOLDER" in os.environ:
            raise
        print(f"error: {describe(e)}", file=sys.stderr)
        sys.exit(2)
    except TrainingDiverged as e:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        # A single run reports here. In a sweep the other members go on; Hydra names this one.
        if _FULL_TRACE or HydraConfig.get().mode != RunMode.RUN:
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


def describe(error: BaseException) -> str:
    """One line for a config mistake, naming the key."""
    if isinstance(error, MissingConfigException) and error.missing_cfg_file:
        group, _, choice = str(error.missing_cfg_file).rpartition("/")
        if group:
            options = ", ".join(error.options or [])
            return f"{group}={choice} does not exist; {group} is one of: {options}"
    cause = error.__cause__
    if isinstance(cause, ConfigKeyError | ConfigAttributeError) and "Could not override" in str(
        error
    ):
        key = cause.full_key or str(error).split("'")[1]
        return (
            f"unknown config key '{key}' (see `python -m catdiff.train --cfg job` for the keys; "
            f"+{key}=VALUE adds a new one)"
        )
    if isinstance(error, MissingMandatoryValue) or isinstance(cause, MissingMandatoryValue):
        missing = error if isinstance(error, MissingMandatoryValue) else cause
        key = missing.full_key
        return f"{key} must be set: pass {key}=VALUE"
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def cli() -> None:
    """``python -m catdiff.train``: Hydra's main, with config mistakes on one line (exit 2)."""
    global _FULL_TRACE
    _FULL_TRACE = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # make Hydra raise instead of printing its own report
    try:
        main()
    except (UserError, HydraException, OmegaConfBaseException) as e:
        if _FULL_TRACE:
            raise
        print(f"error: {describe(e)}", file=sys.stderr)
        sys.exit(2)
    except TrainingDiverged as e:
        if _FULL_TRACE:
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    cli()
