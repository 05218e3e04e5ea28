"""Data setup and batch throughput next to what training consumes: ``python -m experiments.bench.data``.

Measures, with the real ``CatDataModule`` (the path ``python -m catdiff.train`` takes):

* **cold setup**: ``prepare_data`` + ``setup`` with an empty decode cache (list, read, hash,
  decode, de-duplicate, split, write the cache). The image files themselves may already be
  in the OS page cache; a truly cold disk adds its read time on top.
* **warm setup**: the same on a fresh ``CatDataModule`` once the cache exists (list + stat
  the files, compare the key, load one tensor file, split): what every later run pays.
* **batches/s**: training batches drawn from the in-memory uint8 tensor through the
  ``DataLoader`` and ``on_after_batch_transfer`` (uint8 -> [-1, 1], random flip), on the CPU.
* **the model's consumption**: training images/s of the default model (the seed's UNet,
  linear schedule, L1 loss, AdamW) at the same batch size, from a few timed steps on this
  machine, or ``--train-img-per-s`` if you measured it elsewhere (e.g. a GPU).

The data layer keeps up when batches/s is well above the training steps/s. Run it on an
idle machine for numbers to quote; the load average is printed with the results.

Lightning (through ``CatDataModule``) is imported only when run. ``make bench-data``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

DEFAULT_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "catfaces64"


def _datamodule(args: argparse.Namespace, root: str | None, cache_dir: str | None):
    from catdiff.lightning.datamodule import CatDataModule

    return CatDataModule(
        source=args.source,
        root=root,
        data_dir=args.data_dir,
        image_size=args.image_size,
        channels=args.channels,
        edges=args.edges,
        batch_size=args.batch_size,
        cache_dir=cache_dir,
    )


def _setup_seconds(args: argparse.Namespace, root: str | None, cache_dir: str | None):
    start = time.perf_counter()
    dm = _datamodule(args, root, cache_dir)
    dm.prepare_data()
    dm.setup("fit")
    return time.perf_counter() - start, dm


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def batches_per_second(dm, n_batches: int, device: str = "cpu") -> float:
    """Training batches/s: DataLoader, copy to ``device``, the on-device transform."""
    from experiments.bench.train_speed import endless_batches

    device = torch.device(device)
    next_batch = endless_batches(dm, device)
    for _ in range(3):  # warm-up
        next_batch()
    _sync(device)
    start = time.perf_counter()
    for _ in range(n_batches):
        x = next_batch()
    _sync(device)
    seconds = time.perf_counter() - start
    assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
    return n_batches / seconds


def train_images_per_second(
    batch_size: int,
    image_size: int,
    channels: int,
    steps: int,
    warmup: int = 2,
    device: str = "cpu",
) -> float:
    """Images/s of catdiff's own fp32 training step on the default model (no Lightning, no AMP):
    the step ``make bench`` times (loss, backward, clipping, AdamW, EMA update)."""
    from experiments.bench.train_speed import build_module, image_batch, train_step_fn

    device = torch.device(device)
    module = build_module({"image_size": image_size, "in_channels": channels}).to(device)
    x0 = image_batch(batch_size, image_size, channels).to(device)
    step = train_step_fn(module, "fp32", lambda: x0)
    for _ in range(warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return steps * batch_size / (time.perf_counter() - start)


def _synthetic_folder(folder: Path, n: int) -> Path:
    """``n`` procedural 64 px sketches as PNG files: a stand-in when no real data is here."""
    from PIL import Image

    from catdiff.data import synthetic_cats

    for i, pixels in enumerate(synthetic_cats(n, 64, seed=0)):
        Image.fromarray(pixels[0].numpy()).save(folder / f"{i:05d}.png")
    return folder


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m experiments.bench.data", description=__doc__.split("\n")[0]
    )
    p.add_argument("--source", default="catfaces", choices=["catfaces", "folder", "cifar10_cat"])
    p.add_argument(
        "--root",
        default=None,
        help=f"image folder (default: {DEFAULT_ROOT} if present, else the usual catfaces lookup, "
        "else 2,000 synthetic PNGs in a temp folder)",
    )
    p.add_argument("--data-dir", default=os.environ.get("CATDIFF_DATA_DIR", "data"))
    p.add_argument("--image-size", type=int, default=28)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--edges", default="none")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--batches", type=int, default=500, help="batches timed for batches/s")
    p.add_argument("--warm-repeats", type=int, default=3)
    p.add_argument(
        "--train-img-per-s",
        type=float,
        default=None,
        help="the model's training images/s (skips measuring it here)",
    )
    p.add_argument("--train-steps", type=int, default=5, help="timed steps when measuring it")
    p.add_argument("--device", default="cpu", help="where batches go and the model trains")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from catdiff.errors import UserError
    from catdiff.lightning.datamodule import CatDataModule  # noqa: F401  (imported before timing)

    with tempfile.TemporaryDirectory(prefix="catdiff-data-bench-") as tmp:
        root = args.root
        what = root
        if root is None and args.source == "catfaces" and DEFAULT_ROOT.is_dir():
            root = what = str(DEFAULT_ROOT)
        cache_dir = str(Path(tmp) / "cache")
        try:
            cold, dm = _setup_seconds(args, root, cache_dir)
        except UserError as error:
            if args.root is not None:
                print(f"error: {error}", file=sys.stderr)
                sys.exit(2)
            folder = _synthetic_folder(Path(tmp) / "synthetic", 2000)
            args.source, root = "folder", str(folder)
            what = f"2,000 synthetic 64 px PNGs (no cat faces found: {error})"
            cold, dm = _setup_seconds(args, root, cache_dir)
        report = str(dm.report)
        warm_times = [_setup_seconds(args, root, cache_dir)[0] for _ in range(args.warm_repeats)]
        warm = statistics.median(warm_times)
        rate = batches_per_second(dm, args.batches, args.device)
        measured = args.train_img_per_s is None
        if measured:
            train_ips = train_images_per_second(
                args.batch_size,
                args.image_size,
                dm.out_channels,
                args.train_steps,
                device=args.device,
            )
        else:
            train_ips = args.train_img_per_s
    train_steps_per_s = train_ips / args.batch_size
    result = {
        "data": what or report.split(":")[0],
        "report": report,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "cold_setup_s": round(cold, 3),
        "warm_setup_s": round(warm, 3),
        "warm_setup_all_s": [round(t, 3) for t in warm_times],
        "batches_per_s": round(rate, 1),
        "data_img_per_s": round(rate * args.batch_size),
        "train_img_per_s": round(train_ips, 1),
        "device": args.device,
        "train_img_per_s_source": f"measured here ({args.device}, default UNet, fp32 training step as in make bench)"
        if measured
        else "given (--train-img-per-s)",
        "train_steps_per_s": round(train_steps_per_s, 3),
        "headroom": round(rate / train_steps_per_s, 1),
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    print(f"data: {result['data']}")
    print(f"  {report}")
    print(f"cold data setup (empty decode cache): {cold:7.2f} s")
    print(
        f"warm data setup (decode cache hit):   {warm:7.2f} s  "
        f"(median of {len(warm_times)}: {', '.join(f'{t:.2f}' for t in warm_times)})"
    )
    print(
        f"training batches drawn:               {rate:7.0f} batches/s "
        f"= {rate * args.batch_size:,.0f} img/s (batch {args.batch_size}, to {args.device}, uint8 -> [-1, 1] + flip)"
    )
    print(
        f"model consumes:                       {train_steps_per_s:7.2f} batches/s "
        f"= {train_ips:,.0f} img/s ({result['train_img_per_s_source']})"
    )
    print(
        f"headroom: the data side draws batches {result['headroom']:,.0f}x faster than training uses them"
    )
    print(
        f"machine: {result['cpus']} CPUs, {result['torch_threads']} torch threads, "
        f"load average {result['load_average_1min']} (other work on the machine slows every figure)"
    )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
