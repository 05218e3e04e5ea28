"""Train a DDPM on cat faces: ``python -m catdiff.train [experiment=NAME] [key=value ...]``.

Thin on purpose: build the data, model, diffusion, callbacks, loggers and trainer from
conf/train.yaml, fit, and print the run folder; each sweep member is one call of :func:`train`.
"""

from __future__ import annotations

import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

from catdiff.cli import one_line_errors, run_hydra
from catdiff.config import (
    build,
    check_devices,
    check_override_types,
    resolve_channels_last,
    resolve_precision,
    to_plain,
)
from catdiff.errors import TrainingDiverged
from catdiff.resume import (
    check_same_setup,
    checkpoint_to_resume,
    prepare_resume,
    read_checkpoint,
    requeue_if_signalled,
)
from catdiff.runtime import prepare_process
from catdiff.validate import check_train_config


def train(cfg: DictConfig) -> dict[str, float]:
    """Run one training job described by ``cfg``; returns the final logged metrics."""
    prepare_process(cfg.trainer)
    check_override_types(cfg)
    check_train_config(cfg)
    from catdiff.checkpoints import adopt_teacher  # torch: after the process setup

    teacher = adopt_teacher(cfg)  # teacher=: its model and diffusion config, then its weights
    if teacher is not None:
        check_train_config(cfg)  # the adopted model and diffusion with this run's data and batch
    check_devices(cfg.trainer)
    resolve_precision(cfg)  # auto -> what this hardware runs, recorded in config.yaml
    resolve_channels_last(cfg)
    run_dir = Path(cfg.paths.run_dir)
    ckpt_path = checkpoint_to_resume(cfg.ckpt_path, run_dir, cfg.paths.output_root, cfg.name)
    resume_step = None
    if ckpt_path is not None:  # read (pickle-free) and compared before anything is built
        state = read_checkpoint(ckpt_path)
        check_same_setup(state, to_plain(cfg), ckpt_path, allow=not cfg.get("resume_check", True))
        resume_step = int(state["global_step"])
        del state

    import lightning as L
    import torch
    from lightning.pytorch.callbacks import LearningRateMonitor

    from catdiff.lightning.loggers import (
        build_loggers,
        finish_wandb,
        save_run_config,
        write_summary,
    )
    from catdiff.lightning.module import NonFiniteLossError

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision("high")

    datamodule = build(cfg.data, "data")
    image_shape = (datamodule.out_channels, cfg.data.image_size, cfg.data.image_size)
    module = build(
        cfg.module,
        "module",
        model=build(cfg.model, "model"),
        diffusion=build(cfg.diffusion, "diffusion"),
        sampler=build(cfg.sampler, "sampler"),
        image_shape=image_shape,
    )
    if teacher is not None:
        module.load_teacher(teacher)
    # Set after building: instantiate() would try to build the _target_ entries inside it.
    module.run_config = to_plain(cfg)
    loggers = build_loggers(cfg)
    callbacks = [build(c, f"callbacks.{k}") for k, c in cfg.callbacks.items() if c is not None]
    if not loggers:  # logger=none: LearningRateMonitor refuses to run without a logger
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer = build(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers or False)
    prepare_resume(ckpt_path, resume_step, trainer, loggers, run_dir)
    if trainer.is_global_zero:
        save_run_config(cfg, run_dir, trainer, loggers)

    started = time.perf_counter()
    failed = True
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        if trainer.is_global_zero and trainer.global_step != resume_step:  # it trained
            write_summary(trainer, loggers, run_dir, metrics, time.perf_counter() - started)
        failed = False
    except NonFiniteLossError as e:
        raise TrainingDiverged(f"{e} (run folder: {run_dir})") from None
    finally:
        finish_wandb(loggers, failed)

    requeue_if_signalled(callbacks, trainer.global_rank)  # preempted: requeue and exit here
    if trainer.is_global_zero:
        print(f"run folder: {run_dir}  (checkpoints/last.ckpt, samples/, config.yaml)")
    return metrics


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    with one_line_errors():
        return train(cfg).get("val/loss")  # what a sweep would optimise


def cli() -> None:
    """``python -m catdiff.train``: Hydra's main, with config mistakes on one line (exit 2)."""
    run_hydra(main)


if __name__ == "__main__":
    cli()
