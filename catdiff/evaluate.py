"""Score a checkpoint: ``python -m catdiff.evaluate ckpt=PATH n=1000 sampler=ddim sampler.steps=50``.

Writes ``<out>/metrics.json``, ``grid.png``, ``zoom.png`` and ``samples.pt`` (uint8), out
defaulting to ``<run folder>/eval/<tag>``. The run's data comes from the config stored in the
checkpoint (``data_root=PATH`` when the images moved); options: conf/evaluate.yaml.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from catdiff.checkpoints import load_checkpoint, load_model
from catdiff.cli import run_main, sampler_name
from catdiff.config import build
from catdiff.diffusion.generate import generate, pick_device
from catdiff.errors import UserError
from catdiff.files import save_torch, writable_folder, write_text
from catdiff.images import grid, save_png, zoom
from catdiff.machine import machine
from catdiff.metrics.metric import Metric
from catdiff.metrics.nll import nll_bpd
from catdiff.metrics.score import ExtractorOptions, score, summary
from catdiff.validate import check_steps_against_T

EVAL_FORMAT = 1


def tag(cfg: DictConfig, name: str, nfe: int, spacing: str | None = None) -> str:
    """``<sampler name><nfe>[-<spacing>]_n<n>[_<extractor>]``; trailing spacing left out."""
    suffix = "" if cfg.metrics.extractor == "catdiff" else f"_{cfg.metrics.extractor}"
    spaced = f"-{spacing}" if spacing not in (None, "trailing") else ""
    return f"{name}{nfe}{spaced}_n{cfg.n}{suffix}"


def load_run_images(data_cfg: dict[str, Any], data_root: str | None) -> dict[str, torch.Tensor]:
    """The run's train and test splits as uint8 (N, C, H, W), in the run's data space."""
    from catdiff.lightning.datamodule import CatDataModule

    kwargs = {k: v for k, v in data_cfg.items() if k != "_target_"}
    if data_root:
        kwargs["root"] = data_root
    dm = CatDataModule(**kwargs)
    dm.setup("test")
    return {"train": dm.train_images, "test": dm.test_images}


def build_metrics(metrics: DictConfig) -> list[Metric]:
    """The ``metrics.*`` entries of conf/evaluate.yaml that have a ``_target_``, built in order."""
    built = []
    for name, node in metrics.items():
        if not (isinstance(node, DictConfig) and "_target_" in node):
            continue
        try:
            metric = build(node, f"metrics.{name}")
        except InstantiationException as e:
            if not str(e).startswith("Error locating target"):
                raise
            raise UserError(f"metrics.{name}._target_={node._target_}: no such class") from None
        if not isinstance(metric, Metric):
            raise UserError(
                f"metrics.{name}._target_={node._target_} is not a catdiff.metrics.metric.Metric"
            )
        built.append(metric)
    return built


def check_options(cfg: DictConfig) -> None:
    """Choices that would otherwise fail only after minutes of sampling."""
    choices = {
        "metrics.extractor": (cfg.metrics.extractor, ("catdiff", "inception")),
        "nll.mode": (cfg.nll.mode, ("sampled", "full", "none")),
        "nll.sigma": (cfg.nll.sigma, ("beta", "beta_tilde")),
        "reference": (cfg.reference, ("train", "test")),
        "weights": (cfg.weights, ("ema", "raw")),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise UserError(
                f"{key}={value} must be one of {', '.join(allowed)} (conf/evaluate.yaml)"
            )
    if cfg.nll.timesteps < 1:
        raise UserError(f"nll.timesteps={cfg.nll.timesteps} must be at least 1")
    for key in ("metrics.inception_weights", "metrics.extractor_path"):
        path = OmegaConf.select(cfg, key)
        if path and not Path(path).is_file():
            raise UserError(f"{key}={path} does not exist")


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Sample, score and write the metrics of one checkpoint; returns what metrics.json holds."""
    if cfg.n < 2 or cfg.batch_size < 1:
        raise UserError(f"n={cfg.n} must be at least 2 and batch_size at least 1")
    check_options(cfg)
    metrics = build_metrics(cfg.metrics) if cfg.metrics.fid else []
    start = time.perf_counter()
    ckpt = load_checkpoint(cfg.ckpt)
    model, diffusion, shape = load_model(ckpt, cfg.weights)
    check_steps_against_T(cfg, diffusion.T)
    run_cfg = ckpt["catdiff"]["config"]
    data_cfg = dict(run_cfg["data"])
    sampler = build(cfg.sampler, "sampler")
    name = sampler_name(sampler)
    device = pick_device(cfg.device)
    model, diffusion = model.to(device), diffusion.to(device)
    nfe = sampler.nfe(diffusion)
    run_dir = Path(cfg.ckpt).resolve().parents[1]
    spacing = getattr(sampler, "spacing", None)
    out = Path(cfg.out) if cfg.out else run_dir / "eval" / tag(cfg, name, nfe, spacing)
    writable_folder(out, "out")  # before the sampling and scoring, not after them
    cache_dir = Path(
        cfg.metrics.extractor_cache or Path(data_cfg.get("data_dir") or "data") / "extractors"
    )

    data = load_run_images(data_cfg, cfg.data_root)
    t0 = time.perf_counter()
    samples, _, sampling_s = generate(
        sampler, model, diffusion, cfg.n, shape, cfg.seed, cfg.batch_size, device
    )
    save_png(grid(samples[: cfg.grid_n]), out / "grid.png")
    save_png(zoom(grid(samples[:16], nrow=4), 8), out / "zoom.png")
    save_torch(samples, out / "samples.pt")
    wall = {"load": round(t0 - start, 2), "sampling": round(sampling_s, 2)}

    result: dict[str, Any] = {
        "catdiff_eval": EVAL_FORMAT,
        "run_dir": str(run_dir),
        "ckpt": str(Path(cfg.ckpt).resolve()),
        "global_step": ckpt.get("global_step"),
        "weights": cfg.weights,
        "sampler": name,
        "steps": getattr(sampler, "steps", diffusion.T),
        "nfe": nfe,
        "n": cfg.n,
        "seed": cfg.seed,
        "data_space": {k: data_cfg.get(k) for k in ("source", "image_size", "channels", "edges")},
        "reference": {"split": cfg.reference, "n": len(data[cfg.reference])},
    }
    if cfg.metrics.fid:
        t1 = time.perf_counter()
        extractor = ExtractorOptions.of(cfg.metrics)
        result.update(
            score(samples, data, data_cfg, metrics, cfg.reference, cache_dir, device, extractor)
        )
        wall["fid"] = round(time.perf_counter() - t1, 2)
    if cfg.nll.mode != "none":
        t2 = time.perf_counter()
        test = data["test"] if cfg.nll.images <= 0 else data["test"][: cfg.nll.images]
        nll = nll_bpd(
            model,
            diffusion,
            test,
            mode=cfg.nll.mode,
            timesteps_per_image=cfg.nll.timesteps,
            batch_size=cfg.nll.batch_size,
            seed=cfg.seed,
            device=device,
            sigma=cfg.nll.sigma,
        )
        result["nll"] = {**nll.to_dict(), "split": "test", "space": data_cfg.get("edges", "none")}
        wall["nll"] = round(time.perf_counter() - t2, 2)
    wall["total"] = round(time.perf_counter() - start, 2)
    result["wall_time_s"] = wall
    result["machine"] = machine()
    result["options"] = OmegaConf.to_container(cfg)
    write_text(out / "metrics.json", json.dumps(result, indent=1) + "\n")
    print(summary_line(result, out))
    return result


def summary_line(result: dict[str, Any], out: Path) -> str:
    parts = [f"{result['sampler']} {result['nfe']} NFE, n={result['n']}", *summary(result)]
    if "nll" in result:
        parts.append(f"NLL {result['nll']['bpd']:.3f}+-{result['nll']['se']:.3f} bits/dim")
    return " | ".join(parts) + f"  ({result['wall_time_s']['total']:.0f} s): {out}/metrics.json"


def main(argv: list[str] | None = None) -> None:
    run_main(evaluate, "evaluate", argv)


if __name__ == "__main__":
    main()
