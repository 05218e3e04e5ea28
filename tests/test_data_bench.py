"""``python -m experiments.bench.data`` on a tiny folder: it runs and reports every figure."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from experiments.bench import data as data_bench


def test_bench_reports_cold_warm_and_throughput(tmp_path, capsys):
    root = tmp_path / "cats"
    root.mkdir()
    for seed in range(40):
        pixels = np.random.default_rng(seed).integers(0, 256, (32, 32), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"{seed}.png")
    args = ["--source", "folder", "--root", str(root), "--batch-size", "8", "--batches", "5"]
    result = data_bench.main(
        [*args, "--train-img-per-s", "100", "--json", str(tmp_path / "b.json")]
    )
    out = capsys.readouterr().out
    for words in (
        "cold data setup",
        "warm data setup",
        "batches/s",
        "model consumes",
        "load average",
    ):
        assert words in out
    assert result["cold_setup_s"] > 0 and result["warm_setup_s"] > 0 and result["batches_per_s"] > 0
    assert "decode cache loaded" not in result["report"]  # the cold run built it
    assert result["train_steps_per_s"] == 100 / 8
    assert json.loads((tmp_path / "b.json").read_text())["headroom"] == result["headroom"]


def test_train_speed_measurement_runs():
    assert data_bench.train_images_per_second(2, 28, 1, steps=1, warmup=1) > 0
