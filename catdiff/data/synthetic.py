"""Procedural cat-face sketches: an offline stand-in for the Kaggle cat faces.

Drawn with Pillow at 4x the size and box-downsampled: ears, face, slit-pupil eyes, nose,
mouth and whiskers on a ramped background, every shape and grey level drawn from
``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from PIL import Image, ImageDraw

from catdiff.errors import UserError

_SUPERSAMPLE = 4
_ANGLES = np.linspace(0, 2 * math.pi, 40, endpoint=False)
_CIRCLE = np.stack([np.cos(_ANGLES), np.sin(_ANGLES)], axis=1)


def _ellipse(cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    return _CIRCLE * (rx, ry) + (cx, cy)


@lru_cache(maxsize=4)
def _unit_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates in [-0.5, 0.5), for the background ramp."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    return xx, yy


def _contrasting(rng: np.random.Generator, level: float, gap: float) -> float:
    """A grey level at least ``gap`` away from ``level`` (on whichever side has room)."""
    lo, hi = level - gap, level + gap
    choices = [(0.0, lo)] if lo > 0 else []
    choices += [(hi, 255.0)] if hi < 255 else []
    a, b = choices[rng.integers(len(choices))]
    return float(rng.uniform(a, b))


def _draw_cat(rng: np.random.Generator, size: int) -> np.ndarray:
    """One sketch as a uint8 (size, size) array; ``size`` is the supersampled canvas side."""
    s = float(size)
    face = rng.uniform(70, 210)
    background = _contrasting(rng, face, 60)
    ramp = rng.uniform(-30, 30)  # brightness change across the image, in grey levels
    phi = rng.uniform(0, 2 * math.pi)
    xx, yy = _unit_grid(size)
    canvas = background + ramp * (xx * math.cos(phi) + yy * math.sin(phi))
    img = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)

    # Geometry in face units (rx, ry), before tilt.
    cx = s * (0.5 + rng.uniform(-0.06, 0.06))
    cy = s * (0.56 + rng.uniform(-0.05, 0.05))
    rx = s * rng.uniform(0.27, 0.35)
    ry = rx * rng.uniform(0.82, 1.0)
    tilt = rng.uniform(-0.25, 0.25)  # radians
    cos_t, sin_t = math.cos(tilt), math.sin(tilt)

    rotate = np.array([[rx * cos_t, rx * sin_t], [-ry * sin_t, ry * cos_t]])

    def place(points: np.ndarray) -> list[float]:
        """Face units (x right, y down, origin at the face centre) -> flat canvas [x0, y0, ...]."""
        return (points @ rotate + (cx, cy)).ravel().tolist()

    ear_tip_x = rng.uniform(0.45, 0.95)
    ear_height = rng.uniform(0.35, 0.8)
    ear_width = rng.uniform(0.55, 0.8)
    inner = _contrasting(rng, face, 25)
    for side in (-1.0, 1.0):
        base_out = np.array([side * 0.95, -0.25])
        base_in = np.array([side * (0.95 - ear_width), -0.9])
        tip = np.array([side * ear_tip_x, -1.0 - ear_height])
        draw.polygon(place(np.stack([base_out, tip, base_in])), fill=int(face))
        centre = (base_out + tip + base_in) / 3
        inner_ear = centre + 0.55 * (np.stack([base_out, tip, base_in]) - centre)
        draw.polygon(place(inner_ear), fill=int(inner))
    draw.polygon(place(_ellipse(0, 0, 1, 1)), fill=int(face))

    eye_x, eye_y = rng.uniform(0.3, 0.45), rng.uniform(-0.3, -0.05)
    eye_r = rng.uniform(0.1, 0.2)
    iris = _contrasting(rng, face, 60)
    pupil = _contrasting(rng, iris, 80)
    slit = rng.uniform(0.2, 0.7)  # pupil width relative to the eye
    for side in (-1.0, 1.0):
        draw.polygon(place(_ellipse(side * eye_x, eye_y, eye_r, eye_r)), fill=int(iris))
        slit_pupil = _ellipse(side * eye_x, eye_y, eye_r * slit, eye_r * 0.9)
        draw.polygon(place(slit_pupil), fill=int(pupil))

    nose_y, nose_w = rng.uniform(0.15, 0.3), rng.uniform(0.08, 0.15)
    nose = _contrasting(rng, face, 50)
    nose_points = np.array([[-nose_w, nose_y], [nose_w, nose_y], [0.0, nose_y + nose_w]])
    draw.polygon(place(nose_points), fill=int(nose))
    line = max(1, round(size / 28))  # about one output pixel wide
    mouth_y = nose_y + nose_w
    for side in (-1.0, 1.0):
        mouth = [[0.0, mouth_y], [side * 0.12, mouth_y + 0.12], [side * 0.24, mouth_y + 0.06]]
        draw.line(place(np.array(mouth)), fill=int(nose), width=line)

    whisker = _contrasting(rng, face, 70)
    length = rng.uniform(0.8, 1.15)
    spread = rng.uniform(0.1, 0.25)
    for side in (-1.0, 1.0):
        for k in (-1, 0, 1):
            start = np.array([side * 0.22, nose_y + 0.08 + 0.05 * k])
            angle = k * spread + rng.uniform(-0.05, 0.05)
            end = start + length * np.array([side * math.cos(angle), math.sin(angle)])
            draw.line(place(np.stack([start, end])), fill=int(whisker), width=line)
    return np.asarray(img.reduce(_SUPERSAMPLE))


def synthetic_cats(n: int, image_size: int = 28, seed: int = 0) -> torch.Tensor:
    """``n`` sketches, uint8 (n, 1, S, S); deterministic, the first k do not depend on n."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise UserError(f"data.image_size={image_size} must be an integer >= 8 for synthetic cats")
    if n < 0:
        raise UserError(f"data.synthetic_n={n} must be >= 0")
    rng = np.random.default_rng(seed)
    out = np.empty((n, 1, image_size, image_size), dtype=np.uint8)
    for i in range(n):
        out[i, 0] = _draw_cat(rng, image_size * _SUPERSAMPLE)
    return torch.from_numpy(out)
