"""End to end, as a user runs it: train a few steps, sample, resume; and the one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from catdiff import allocator
from tests.conftest import ROOT


def run(
    args: list[str], cwd: Path = ROOT, env: dict | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{args} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


FAST = ["debug=fast", "data=synthetic", "logger=csv"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("run") / "first"
    run(["catdiff.train", *FAST, f"hydra.run.dir={run_dir}"])
    return run_dir


def test_train_writes_checkpoint_grid_config_and_metrics(trained_run: Path) -> None:
    assert (trained_run / "checkpoints" / "last.ckpt").is_file()
    assert list((trained_run / "samples").glob("step_*.png")), "no sample grid written"
    assert (trained_run / "config.yaml").is_file()
    from omegaconf import OmegaConf

    from catdiff.precision import auto_precision

    # trainer.precision=auto (the default) is resolved and recorded, not passed on as "auto".
    config = OmegaConf.load(trained_run / "config.yaml")
    assert config.trainer.precision == auto_precision("auto")
    # module.channels_last=auto too, for that precision (fp32 on CPU: on; bf16: off)
    assert config.module.channels_last is (config.trainer.precision == "32-true")
    metrics = (trained_run / "csv" / "metrics.csv").read_text()
    for column in ("train/loss", "val/loss", "val/loss_t0", "lr-AdamW"):
        assert column in metrics.splitlines()[0]
    ckpt = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 20
    assert any(k.startswith("ema.model.") for k in ckpt["state_dict"]), (
        "EMA weights missing from the checkpoint"
    )


def test_sample_writes_grid_zoom_trajectory_and_images(trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "samples"
    args = [
        "catdiff.sample",
        f"ckpt={trained_run / 'checkpoints' / 'last.ckpt'}",
        "n=6",
        "sampler=ddim",
        "steps=5",
        "seed=0",
    ]
    run([*args, f"out={out}"])
    for name in ("grid.png", "zoom.png", "trajectory.png"):
        assert (out / name).is_file(), name
    images = sorted((out / "images").glob("*.png"))
    assert [p.name for p in images] == [f"{i:04d}.png" for i in range(6)]
    from PIL import Image

    assert Image.open(images[0]).size == (28, 28)
    zoom, grid = Image.open(out / "zoom.png"), Image.open(out / "grid.png")
    assert zoom.size[0] > 4 * grid.size[0] / 3  # x8 of the first 16 (here 6) samples
    # Same seed, same images; another seed, other images.
    run([*args, f"out={tmp_path / 'again'}"])
    run([*args[:-1], "seed=1", f"out={tmp_path / 'other'}"])
    first = Image.open(out / "grid.png").tobytes()
    assert first == Image.open(tmp_path / "again" / "grid.png").tobytes()
    assert first != Image.open(tmp_path / "other" / "grid.png").tobytes()
    # bf16: the network cast once; same images as fp32 up to a few grey levels, and it says so.
    proc = run([*args, "precision=bf16", f"out={tmp_path / 'bf16'}"])
    assert "bf16" in proc.stdout
    fast = torch.tensor(list(Image.open(tmp_path / "bf16" / "grid.png").getdata())).float()
    exact = torch.tensor(list(Image.open(out / "grid.png").getdata())).float()
    assert fast.shape == exact.shape and (fast - exact).abs().mean() < 4.0


def test_sample_default_folder_is_named_after_the_sampler_group(trained_run: Path) -> None:
    """A sampler added as its module plus its yaml (EDM's Heun) runs from the command line,
    with the same overrides as training; default folders keep their names (ddim-5-seed0)."""
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    proc = run(["catdiff.sample", f"ckpt={ckpt}", "n=2", "sampler=heun", "sampler.steps=4"])
    assert "7 network evaluations" in proc.stdout
    assert (trained_run / "samples" / "heun-4-seed0" / "grid.png").is_file()
    run(["catdiff.sample", f"ckpt={ckpt}", "n=2", "sampler=ddim", "steps=3", "seed=1"])
    assert (trained_run / "samples" / "ddim-3-seed1" / "grid.png").is_file()
    proc = run(["catdiff.sample", f"ckpt={ckpt}", "sampler=heun", "eta=0.5"], check=False)
    assert proc.returncode == 2 and "unknown option 'eta'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_resume_continues_global_step_without_a_logger(trained_run: Path, tmp_path: Path) -> None:
    last = trained_run / "checkpoints" / "last.ckpt"
    run(
        [
            "catdiff.train",
            *FAST,
            f"hydra.run.dir={tmp_path}",
            f"ckpt_path={last}",
            "trainer.max_steps=30",
            "logger=none",  # the learning-rate monitor needs a logger: it must step aside
        ]
    )
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 30


def test_sample_rejects_a_file_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.ckpt"
    bogus.write_text("not a checkpoint")
    proc = run(["catdiff.sample", f"ckpt={bogus}"], check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a catdiff checkpoint" in lines[0], proc.stderr


def test_no_network_and_no_data_root_stops_with_one_line(tmp_path: Path) -> None:
    env = {"CATDIFF_DATA_DIR": str(tmp_path / "data"), "CATDIFF_DATA_ROOT": ""}
    proc = run(
        ["catdiff.train", f"hydra.run.dir={tmp_path / 'run'}", "logger=csv"], env=env, check=False
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert "data.root=PATH" in lines[-1] and "data=synthetic" in lines[-1]
    assert "Traceback" not in proc.stderr


# Bad config values (one line naming the key, exit 2): tests/test_errors.py.


def test_trains_on_real_cat_faces(catfaces_root: Path, tmp_path: Path) -> None:
    run(
        [
            "catdiff.train",
            "debug=fast",
            "logger=csv",
            f"data.root={catfaces_root}",
            f"hydra.run.dir={tmp_path}",
        ]
    )
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    log = (tmp_path / "train.log").read_text()
    assert "8000 distinct" in log
    # catdiff.allocator keeps freed activations in the heap (glibc; elsewhere it says so)
    assert ("mmap_threshold=1024 MiB" if allocator._glibc() else "allocator: ") in log


def test_experiment_file_runs_its_whole_sweep_without_dash_m(tmp_path: Path) -> None:
    """`python -m catdiff.train experiment=edge_trial` (the README's command) is the whole
    comparison: one sweep folder, one run folder per member (debug=fast: one seed)."""
    run(["catdiff.train", "experiment=edge_trial", *FAST], env={"CATDIFF_OUTPUTS": str(tmp_path)})
    (sweep,) = (tmp_path / "edge_trial").glob("multirun_*")
    members = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name.split("_", 1)[0] for p in members] == ["0", "1", "2"]
    edges = []
    for member in members:
        assert (member / "checkpoints" / "last.ckpt").is_file()
        edges.append(OmegaConf.load(member / "config.yaml").data.edges)
    assert edges == ["none", "sobel", "sobel+gray"]


def test_sample_and_evaluate_spacing_defaults_to_each_samplers_own() -> None:
    from catdiff.cli import compose_config
    from catdiff.config import build

    for name in ("sample", "evaluate"):

        def sampler(*argv: str, name: str = name):
            return build(compose_config(name, ["ckpt=x", *argv]).sampler, "sampler")

        assert sampler("sampler=dpm_solver").spacing == "logsnr"
        assert sampler("sampler=ddim").spacing == "trailing"
        assert sampler("sampler=ddim", "sampler.spacing=logsnr").spacing == "logsnr"
        assert sampler("sampler=ddim", "spacing=logsnr").spacing == "logsnr"  # the shorthand


def test_sample_and_evaluate_take_trainings_sampler_group_and_its_overrides() -> None:
    """One parser: the sampler group of training (conf/sampler/), its keys dotted or as the
    flat shorthands, run-folder paths with '=' and ',' as plain strings."""
    from catdiff.cli import choice, compose_config, sampler_name
    from catdiff.config import build

    ckpt = "/runs/multirun_x/0_diffusion.loss=l2,seed=2/checkpoints/last.ckpt"
    cfg = compose_config("evaluate", [f"ckpt={ckpt}", "sampler=dpm_solver", "sampler.steps=25"])
    assert cfg.ckpt == ckpt and choice("sampler") == "dpm_solver"
    sampler = build(cfg.sampler, "sampler")
    assert sampler.steps == 25 and sampler_name(sampler) == "dpm_solver"
    flat = compose_config("sample", ["ckpt=x", "sampler=ddim", "steps=7", "eta=0.5"])
    assert (flat.sampler.steps, flat.sampler.eta) == (7, 0.5)
    assert compose_config("sample", ["ckpt=x"]).sampler._target_.endswith("DDPMSampler")
    assert compose_config("evaluate", ["ckpt=x"]).sampler.steps == 50  # DDIM-50 by default


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (
            ["ckpt=x", "sampler=nope"],
            "sampler=nope does not exist; sampler is one of: consistency, ddim, ddpm",
        ),
        (["ckpt=x", "sampler=ddpm", "steps=50"], "unknown option 'steps'"),
        (["ckpt=x", "sampler=ddim", "sampler.stepz=5"], "sampler.stepz"),
        (["ckpt=x", "sampler=ddim", "sampler.steps=many"], "sampler.steps=many has the wrong type"),
        (["ckpt=x", "n=many"], "n=many has the wrong type: n takes an integer"),
        (["ckpt=x", "seed"], "'seed' is not key=value"),
        (["n=3"], "ckpt must be set"),
    ],
)
def test_sample_option_mistakes_are_one_line_naming_the_key(argv: list[str], named: str) -> None:
    from catdiff.cli import compose_config
    from catdiff.errors import UserError

    with pytest.raises(UserError, match=named) as excinfo:
        compose_config("sample", argv)
    assert "\n" not in str(excinfo.value)
