"""catdiff's own FID/KID extractor: a small CNN trained with SimCLR on the training images,
offline, once per training set (cached under :func:`cache_key`). Method ``catdiff-simclr-v1``:

* **Encoder**: five 3x3 conv + BatchNorm + ReLU layers, widths w, 2w, 2w, 4w, 4w (strides
  1, 2, 1, 2, 1), global average pooling -> 4w features, the FID/KID features (the
  projection head is used only in training).
* **Views**: integer translations up to ``max_shift`` px, horizontal flips,
  brightness/contrast jitter and a little Gaussian noise; no resampling and no blur, so the
  features stay sensitive to blur and noise, the typical defects of generated images.
* **Loss**: NT-Xent over the 2B views of a batch; AdamW, linear warm-up, cosine decay.

Deterministic given the seed and the thread count; the SHA-256 of the weights is its identity.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from catdiff.errors import UserError
from catdiff.files import load_tensors, save_torch
from catdiff.metrics.extractor import FeatureExtractor, to_unit

log = logging.getLogger(__name__)

METHOD = "catdiff-simclr-v1"
FORMAT = "catdiff-extractor"
PATH_KEY = "metrics.extractor_path"
DEFAULTS = {
    "width": 16,  # first conv's channels; features are 4 * width
    "proj_dim": 64,  # projection head output (training only)
    "steps": 200,
    "batch_size": 256,  # images per step (2 views each)
    "lr": 3e-3,
    "weight_decay": 1e-4,
    "warmup": 0.05,  # fraction of the steps
    "temperature": 0.2,
    "max_shift": 3,  # px
    "brightness": 0.2,  # [-1, 1] units
    "contrast": 0.3,  # relative
    "noise": 0.02,  # [-1, 1] units
    "seed": 0,
}


class Encoder(nn.Module):
    """(N, C, H, W) float in [-1, 1] -> (N, 4 * width) pooled features (non-negative)."""

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        widths = [channels, width, 2 * width, 2 * width, 4 * width, 4 * width]
        layers: list[nn.Module] = []
        for cin, cout, stride in zip(widths, widths[1:], (1, 2, 1, 2, 1)):
            conv = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            layers += [conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x).mean(dim=(2, 3))


def augment(x: Tensor, gen: torch.Generator, hp: dict) -> Tensor:
    """One random view of each image of x (B, C, H, W) in [-1, 1]; same shape, in [-1, 1]."""
    b, _, h, w = x.shape
    s = int(hp["max_shift"])
    if s > 0:
        padded = F.pad(x, (s, s, s, s), mode="replicate")
        dy = torch.randint(0, 2 * s + 1, (b, 1), generator=gen)
        dx = torch.randint(0, 2 * s + 1, (b, 1), generator=gen)
        rows = (dy + torch.arange(h))[:, :, None]  # (B, H, 1)
        cols = (dx + torch.arange(w))[:, None, :]  # (B, 1, W)
        x = padded[torch.arange(b)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
    flip = torch.rand(b, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    contrast = 1 + hp["contrast"] * (2 * torch.rand(b, 1, 1, 1, generator=gen) - 1)
    bright = hp["brightness"] * (2 * torch.rand(b, 1, 1, 1, generator=gen) - 1)
    x = (x - mean) * contrast + mean + bright
    sigma = hp["noise"] * torch.rand(b, 1, 1, 1, generator=gen)
    x = x + sigma * torch.randn(x.shape, generator=gen)
    return x.clamp(-1, 1).contiguous()


def nt_xent(z: Tensor, temperature: float) -> Tensor:
    """NT-Xent loss of z (2B, d): rows i and i + B are the two views of one image."""
    n = z.shape[0] // 2
    z = F.normalize(z, dim=1)
    sim = (z @ z.T) / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(sim, target)


def _lr_factor(step: int, steps: int, warmup: float) -> float:
    warm = max(1, round(warmup * steps))
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))


def train_encoder(images: Tensor, hp: dict, progress: bool = True) -> tuple[Encoder, dict]:
    """SimCLR on uint8 images (N, C, H, W), on the CPU: (encoder in eval mode, timings, loss)."""
    n, c = images.shape[:2]
    gen = torch.Generator().manual_seed(int(hp["seed"]))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(hp["seed"]))
        encoder = Encoder(c, int(hp["width"]))
        d = encoder.body[-3].out_channels
        head = nn.Sequential(nn.Linear(d, d), nn.ReLU(inplace=True), nn.Linear(d, hp["proj_dim"]))
    params = list(encoder.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=hp["lr"], weight_decay=hp["weight_decay"])
    steps, bs = int(hp["steps"]), min(int(hp["batch_size"]), n)
    perm, pos, loss_value = torch.randperm(n, generator=gen), 0, float("nan")
    start, cpu_start = time.perf_counter(), time.process_time()
    bar = tqdm(range(steps), desc="catdiff extractor", unit="step", disable=not progress)
    for step in bar:
        if pos + bs > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        x = to_unit(images[perm[pos : pos + bs]])
        pos += bs
        for group in opt.param_groups:
            group["lr"] = hp["lr"] * _lr_factor(step, steps, hp["warmup"])
        views = torch.cat([augment(x, gen, hp), augment(x, gen, hp)])
        loss = nt_xent(head(encoder(views)), hp["temperature"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_value = loss.item()
        if progress and step % 10 == 0:
            bar.set_postfix(loss=f"{loss_value:.3f}")
    bar.close()
    encoder.eval()
    return encoder, {
        "seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu_start,
        "final_loss": loss_value,
    }


class CatdiffExtractor(FeatureExtractor):
    """forward: float (N, C, H, W) in [-1, 1] -> (N, 4 * width) float32 encoder features."""

    def __init__(self, encoder: Encoder, hparams: dict, image_shape: tuple, trained: dict):
        super().__init__()
        self.name, self.dim = METHOD, encoder.body[-3].out_channels
        self.encoder = encoder
        self.hparams, self.image_shape, self.trained = dict(hparams), tuple(image_shape), trained
        self._freeze(encoder)

    def check_images(self, shape: tuple[int, ...]) -> None:
        if tuple(shape[1:]) != self.image_shape:
            raise UserError(
                f"the catdiff extractor {self.sha256[:12]} was trained on images "
                f"{'x'.join(map(str, self.image_shape))}, not {'x'.join(map(str, shape[1:]))}: "
                f"use one trained on this data ({PATH_KEY})"
            )

    def forward(self, x: Tensor) -> Tensor:
        self.check_images(x.shape)
        return self.encoder(x.float())

    def info(self) -> dict:
        params = sum(p.numel() for p in self.encoder.parameters())
        return {
            **super().info(),
            "params": params,
            "image_shape": list(self.image_shape),
            "hparams": self.hparams,
            "trained": self.trained,
        }

    def payload(self) -> dict:
        """Plain types and tensors: loads with weights_only."""
        state = {k: v.detach().cpu() for k, v in self.encoder.state_dict().items()}
        return {
            "format": FORMAT,
            "method": METHOD,
            "hparams": self.hparams,
            "image_shape": list(self.image_shape),
            "trained": self.trained,
            "sha256": self.sha256,
            "state_dict": state,
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path).expanduser()
        save_torch(self.payload(), path)
        return path


class _BadFile(Exception):
    """A file that is not a usable catdiff extractor; the message says why."""


def _read(path: Path) -> CatdiffExtractor:
    try:
        p = load_tensors(path)
    except Exception as e:  # any parse failure (the unpickler raises KeyError, EOFError, ...)
        raise _BadFile(f"cannot be read ({type(e).__name__})") from None
    if not isinstance(p, dict) or p.get("format") != FORMAT:
        raise _BadFile("is not a catdiff extractor file")
    if p.get("method") != METHOD:
        raise _BadFile(f"holds method {p.get('method')!r}, this catdiff reads {METHOD!r}")
    hp, shape, state = p.get("hparams"), p.get("image_shape"), p.get("state_dict")
    if not (isinstance(hp, dict) and isinstance(shape, list) and isinstance(state, dict)):
        raise _BadFile("is incomplete")
    try:
        encoder = Encoder(int(shape[0]), int(hp["width"]))
        encoder.load_state_dict(state)
    except (RuntimeError, KeyError, IndexError, TypeError, ValueError):
        raise _BadFile("does not match its recorded architecture") from None
    extractor = CatdiffExtractor(encoder, hp, tuple(shape), p.get("trained") or {})
    if extractor.sha256 != p.get("sha256"):
        raise _BadFile("is corrupt (its weights do not match their recorded SHA-256)")
    return extractor


def load_extractor(path: str | Path) -> CatdiffExtractor:
    """A saved catdiff extractor (``metrics.extractor_path=PATH``)."""
    p = Path(path).expanduser()
    if not p.is_file():
        what = "is not a file" if p.exists() else "does not exist"
        raise UserError(f"{PATH_KEY}={path} {what}")
    try:
        return _read(p)
    except _BadFile as e:
        raise UserError(f"{PATH_KEY}={path} {e}") from None


def cache_key(images: Tensor, hparams: dict) -> str:
    """SHA-256 over the method, ``hparams``, the images' shape and their bytes (uint8)."""
    h = hashlib.sha256(json.dumps({"method": METHOD, "hparams": hparams}, sort_keys=True).encode())
    h.update(f"{tuple(images.shape)}\0".encode())
    h.update(images.contiguous().reshape(-1).numpy().tobytes())
    return h.hexdigest()


def cache_path(cache_dir: str | Path, key: str) -> Path:
    return Path(cache_dir).expanduser() / f"catdiff-extractor-{key[:16]}.pt"


def catdiff_extractor(
    images: Tensor,
    cache_dir: str | Path | None,
    seed: int = 0,
    progress: bool = True,
    **hparams: float,
) -> CatdiffExtractor:
    """The extractor of the uint8 training images, cached or trained (``hparams`` over
    :data:`DEFAULTS`; ``cache_dir`` None: no cache; a bad or stale cache file is rebuilt)."""
    unknown = sorted(set(hparams) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"unknown catdiff extractor hyperparameters: {', '.join(unknown)}")
    if not torch.is_tensor(images) or images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError("the catdiff extractor trains on uint8 images (N, C, H, W)")
    if images.shape[0] < 2:
        raise UserError(
            f"the catdiff extractor needs at least 2 training images, got {len(images)}"
        )
    hp = {**DEFAULTS, **hparams, "seed": int(seed)}
    images = images.cpu().contiguous()
    key = cache_key(images, hp)
    path = cache_path(cache_dir, key) if cache_dir not in (None, "") else None
    if path is not None and path.is_file():
        try:
            extractor = _read(path)
            if extractor.trained.get("key") == key:
                return extractor
            log.warning("catdiff extractor cache %s is stale: retraining", path)
        except _BadFile as e:
            log.warning("catdiff extractor cache %s %s: retraining", path, e)
    log.info("training the catdiff FID extractor on %d images (%d steps)", len(images), hp["steps"])
    encoder, stats = train_encoder(images, hp, progress)
    images_sha = hashlib.sha256(images.reshape(-1).numpy().tobytes()).hexdigest()
    trained = {"key": key, "images": len(images), "images_sha256": images_sha, **stats}
    extractor = CatdiffExtractor(encoder, hp, tuple(images.shape[1:]), trained)
    if path is not None:
        extractor.save(path)
    return extractor
