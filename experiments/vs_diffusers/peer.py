"""The peer: diffusers' standard unconditional recipe, reproduced as the baseline.

``python -m experiments.vs_diffusers.peer out=DIR [steps=6000] [snapshot_every=750] [threads=2]``

The recipe (issue 7): ``UNet2DModel`` (1.62M parameters, attention at 7x7), ``DDPMScheduler``
(linear betas 1e-4..0.02, T=1000, epsilon prediction), MSE on the noise, AdamW (lr 5e-4,
weight decay 0, torch's betas), 200 warm-up steps then cosine to 0
(``diffusers.optimization.get_cosine_schedule_with_warmup``), batch 64, gradient-norm clipping
at 1.0 (as ``train_unconditional.py``), ``EMAModel(decay=0.999)`` with its default warm-up
``min(decay, (1 + n) / (10 + n))``, fp32; random horizontal flip; images from catdiff's
decoder (bicubic 64 -> 28, grayscale, exact duplicates dropped), training split only, so that
the test split stays held out for the copying check. Samples: ``DDIMScheduler.from_config`` of
the training scheduler, 50 steps, eta 0.

Every ``snapshot_every`` steps the EMA weights go to ``DIR/snapshots/step<N>.pt`` with the
images seen and the training wall time so far; every ``resume_every`` steps the whole state
goes to ``DIR/resume.pt``: a killed run continues from there when started again with the same
``out`` (its log then repeats the steps after the last save).
"""

from __future__ import annotations

import csv
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from catdiff.errors import UserError
from experiments.bench.peer import DIFFUSERS_UNET
from experiments.vs_diffusers.cli import one_line_errors, parse

UNET_CONFIG: dict[str, Any] = DIFFUSERS_UNET  # the UNet2DModel, 1,623,169 parameters
OPTIONS: dict[str, Any] = {
    "out": None,
    "steps": 6000,
    "snapshot_every": 750,
    "resume_every": 250,
    "threads": 2,
    "seed": 0,
    "data": "catfaces",
    "data_root": None,
}
RECIPE: dict[str, Any] = {
    "T": 1000,
    "lr": 5e-4,
    "weight_decay": 0.0,
    "warmup_steps": 200,
    "batch_size": 64,
    "steps": 6000,
    "ema_decay": 0.999,
    "grad_clip": 1.0,
    "sample_steps": 50,
}


def build_unet() -> torch.nn.Module:
    from diffusers import UNet2DModel

    return UNet2DModel(**UNET_CONFIG)


def build_scheduler(T: int = RECIPE["T"]):
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=T)


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 1, H, W) -> float in [-1, 1] (transforms.ToTensor + Normalize([0.5], [0.5]))."""
    return images.float().div(127.5).sub(1.0)


def epoch_batches(n: int, batch_size: int, generator: torch.Generator):
    """Index batches of one shuffled epoch; the last incomplete batch is dropped so that every
    step sees exactly ``batch_size`` images (images seen = steps x batch_size)."""
    order = torch.randperm(n, generator=generator)
    for start in range(0, n - batch_size + 1, batch_size):
        yield order[start : start + batch_size]


def _append_csv(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train(
    images: torch.Tensor,
    out: Path,
    steps: int = RECIPE["steps"],
    snapshot_every: int = 750,
    resume_every: int = 250,
    seed: int = 0,
    log_every: int = 50,
    progress: bool = True,
) -> Path:
    """Train the peer recipe on uint8 images (N, 1, 28, 28); returns ``out``."""
    from diffusers.optimization import get_cosine_schedule_with_warmup
    from diffusers.training_utils import EMAModel

    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 1:
        raise UserError("the peer trains on grayscale uint8 images (N, 1, H, W)")
    batch = RECIPE["batch_size"]
    if len(images) < batch:
        raise UserError(f"the peer needs at least {batch} training images, got {len(images)}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "snapshots").mkdir(exist_ok=True)
    torch.manual_seed(seed)
    model = build_unet()
    scheduler = build_scheduler()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=RECIPE["lr"], weight_decay=RECIPE["weight_decay"]
    )
    lr_schedule = get_cosine_schedule_with_warmup(optimizer, RECIPE["warmup_steps"], steps)
    ema = EMAModel(model.parameters(), decay=RECIPE["ema_decay"])
    generator = torch.Generator().manual_seed(seed)
    step, wall = 0, 0.0
    resume = out / "resume.pt"
    if resume.exists():
        state = torch.load(resume, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        lr_schedule.load_state_dict(state["lr_schedule"])
        ema.load_state_dict(state["ema"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        step, wall = state["step"], state["wall_s"]
        print(f"peer: resuming {out} at step {step}", file=sys.stderr)
    params = list(model.parameters())
    model.train()
    t0 = time.perf_counter() - wall
    running = 0.0
    bar = _bar(steps, step, progress)
    while step < steps:
        for idx in epoch_batches(len(images), batch, generator):
            x0 = to_model_range(images[idx])
            flip = torch.rand(batch, generator=generator) < 0.5
            x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
            noise = torch.randn(x0.shape, generator=generator)
            t = torch.randint(0, RECIPE["T"], (batch,), generator=generator)
            noisy = scheduler.add_noise(x0, noise, t)
            loss = F.mse_loss(model(noisy, t).sample.float(), noise)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, RECIPE["grad_clip"])
            optimizer.step()
            lr_schedule.step()
            optimizer.zero_grad(set_to_none=True)
            ema.step(params)
            step += 1
            running += loss.item()
            bar.update(1)
            if step % log_every == 0:
                row = {
                    "step": step,
                    "images_seen": step * batch,
                    "loss": running / log_every,
                    "lr": lr_schedule.get_last_lr()[0],
                    "wall_s": round(time.perf_counter() - t0, 2),
                }
                _append_csv(out / "log.csv", row)
                bar.set_postfix(loss=f"{row['loss']:.4f}")
                running = 0.0
            snapshot_now = step % snapshot_every == 0 or step == steps
            if snapshot_now or step % resume_every == 0:
                wall = time.perf_counter() - t0
            if snapshot_now:
                snapshot = {"ema": ema.state_dict(), "step": step, "images_seen": step * batch}
                _atomic_save(
                    {
                        **snapshot,
                        "wall_s": wall,
                        "seed": seed,
                        "recipe": RECIPE,
                        "unet": UNET_CONFIG,
                    },
                    out / "snapshots" / f"step{step:06d}.pt",
                )
                _append_csv(
                    out / "snapshots.csv",
                    {"step": step, "images_seen": step * batch, "wall_s": round(wall, 2)},
                )
            if snapshot_now or step % resume_every == 0:
                state = {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "lr_schedule": lr_schedule.state_dict(),
                    "ema": ema.state_dict(),
                    "generator": generator.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "step": step,
                    "wall_s": wall,
                }
                _atomic_save(state, resume)
                t0 = time.perf_counter() - wall  # saving is not training time
            if step >= steps:
                break
    bar.close()
    return out


def _bar(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="peer", unit="step", disable=not enabled)


def load_snapshot(path: str | Path) -> torch.nn.Module:
    """The peer's UNet with the EMA weights of a snapshot, in eval mode."""
    from diffusers.training_utils import EMAModel

    path = Path(path)
    if not path.is_file():
        raise UserError(f"peer snapshot {path} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=False)
    model = build_unet()
    ema = EMAModel(model.parameters(), decay=RECIPE["ema_decay"])
    ema.load_state_dict(state["ema"])
    ema.copy_to(model.parameters())
    return model.eval()


@torch.inference_mode()
def ddim_spacing() -> str:
    """How the recipe's DDIM spaces its steps (diffusers' default for from_config: leading)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config(build_scheduler().config).config.timestep_spacing


def sample(
    model: torch.nn.Module,
    n: int,
    seed: int = 0,
    steps: int = RECIPE["sample_steps"],
    batch_size: int = 500,
) -> torch.Tensor:
    """n uint8 samples (n, 1, 28, 28): ``DDIMScheduler.from_config`` of the training
    scheduler, ``steps`` steps, eta 0 (what the recipe's pipeline does), in fp32."""
    from diffusers import DDIMScheduler

    ddim = DDIMScheduler.from_config(build_scheduler().config)
    ddim.set_timesteps(steps)
    generator = torch.Generator().manual_seed(seed)
    size = UNET_CONFIG["sample_size"]
    chunks = []
    for start in range(0, n, batch_size):
        x = torch.randn((min(batch_size, n - start), 1, size, size), generator=generator)
        # inference_mode: without it autograd keeps every step's activations (OOM at n=500)
        with torch.inference_mode():
            for t in ddim.timesteps:
                x = ddim.step(model(x, t).sample, t, x, eta=0.0).prev_sample
        chunks.append(x.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8))
    return torch.cat(chunks)


@one_line_errors
def main(argv: list[str] | None = None) -> None:
    from experiments.vs_diffusers.data import training_images

    opts = parse(argv, OPTIONS, "experiments.vs_diffusers.peer", required=["out"])
    torch.set_num_threads(opts["threads"])
    images = training_images(opts["data_root"], opts["data"])["train"]
    train(
        images,
        Path(opts["out"]),
        steps=opts["steps"],
        snapshot_every=opts["snapshot_every"],
        resume_every=opts["resume_every"],
        seed=opts["seed"],
    )


if __name__ == "__main__":
    main()
