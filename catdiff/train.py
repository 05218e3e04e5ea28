"""Train a DDPM on cat faces: ``python -m catdiff.train [experiment=NAME] [key=value ...]``.

Thin on purpose: compose the config (conf/train.yaml), build the data, model, diffusion,
callbacks, loggers and trainer from it, fit, and print where the run folder is.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from catdiff.config import build, to_plain
from catdiff.errors import UserError
from catdiff.lightning.module import NonFiniteLossError

log = logging.getLogger("catdiff.train")

# Lightning warnings that do not apply here: whole-batch iterable datasets know their length
# exactly (no workers), the EMA copy is in eval mode on purpose, and a torch deprecation.
for message in (
    r".*IterableDataset. has .__len__. defined",
    r".*module\(s\) in eval mode",
    r".*LeafSpec",
):
    warnings.filterwarnings("ignore", message=message)


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


def train(cfg: DictConfig) -> dict[str, float]:
    """Run one training job described by ``cfg``; returns the final logged metrics."""
    run_dir = Path(cfg.paths.run_dir)
    ckpt_path = resolve_ckpt_path(cfg.ckpt_path, cfg.paths.output_root, cfg.name)
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
    callbacks = [build(c, f"callbacks.{k}") for k, c in cfg.callbacks.items() if c is not None]
    loggers = [
        build(c, f"logger.{k}") for k, c in (cfg.get("logger") or {}).items() if c is not None
    ]
    trainer = build(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers or False)

    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if trainer.is_global_zero:
        print(f"run folder: {run_dir}  (checkpoints/last.ckpt, samples/, config.yaml)")
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics = train(cfg)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except NonFiniteLossError as e:
        print(f"error: {e} (run folder: {cfg.paths.run_dir})", file=sys.stderr)
        sys.exit(1)
    return metrics.get("val/loss")  # what a sweep would optimise


if __name__ == "__main__":
    main()
