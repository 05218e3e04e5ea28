"""The Hydra configuration users compose: defaults are the seed's experiment, experiments compose."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tests.conftest import CONF, compose

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def test_defaults_are_the_seed_experiment() -> None:
    cfg = compose()
    assert cfg.data.source == "catfaces" and cfg.data.image_size == 28 and cfg.data.channels == 1
    assert (
        cfg.diffusion.schedule,
        cfg.diffusion.T,
        cfg.diffusion.objective,
        cfg.diffusion.loss,
    ) == ("linear", 1000, "eps", "l1")
    assert cfg.sampler._target_.endswith("DDPMSampler") and cfg.sampler.sigma == "beta_tilde"
    assert cfg.model.in_channels == 1


def test_there_are_experiments() -> None:
    assert {"baseline", "edge_trial"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_and_builds(name: str) -> None:
    cfg = compose([f"experiment={name}", "debug=fast", "data=synthetic"])
    model = instantiate(cfg.model)
    diffusion = instantiate(cfg.diffusion)
    datamodule = instantiate(cfg.data)
    assert model.in_channels == datamodule.out_channels
    assert diffusion.T == cfg.diffusion.T


def test_edge_trial_trains_on_edges_with_matching_channels() -> None:
    cfg = compose(["experiment=edge_trial"])
    assert cfg.data.edges == "sobel" and cfg.model.in_channels == 1
    cfg = compose(["experiment=edge_trial", "data.edges=sobel+gray"])
    assert cfg.model.in_channels == 2


# ------------------------------------------------------------------ experiments sweep
SWEEP_AXES = {
    "baseline": {},
    "edge_trial": {"data.edges": "none,sobel,sobel+gray"},
    "schedule_sweep": {"diffusion.schedule": "linear,cosine,quadratic,sigmoid"},
    "loss_sweep": {"diffusion.loss": "l1,l2,huber"},
    "objective_sweep": {"diffusion.objective": "eps,x0,v,flow"},
}


def test_the_experiments_of_the_issue_exist() -> None:
    assert set(SWEEP_AXES) <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", sorted(SWEEP_AXES))
def test_experiment_files_sweep_by_themselves_with_the_seed_as_an_axis(name: str) -> None:
    cfg = compose([f"experiment={name}"])
    assert cfg.name == name
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"  # no -m needed
    assert dict(cfg.hydra.sweeper.params) == {"seed": "0,1,2", **SWEEP_AXES[name]}
    fast = compose([f"experiment={name}", "debug=fast"])
    assert dict(fast.hydra.sweeper.params) == {"seed": "0", **SWEEP_AXES[name]}  # one seed


def test_no_experiment_is_a_single_run() -> None:
    assert compose().hydra.mode is None  # Hydra's default: RUN


def _members(cfg) -> list[list[str]]:
    """The sweep members of a composed experiment, as Hydra's basic sweeper expands them."""
    axes = [[f"{k}={v}" for v in str(vs).split(",")] for k, vs in cfg.hydra.sweeper.params.items()]
    return [list(member) for member in itertools.product(*axes)]


@pytest.mark.parametrize("name", sorted(SWEEP_AXES))
def test_debug_fast_trains_every_member_of_every_experiment(name: str, tmp_path: Path) -> None:
    from omegaconf import open_dict

    from catdiff.train import train

    base = [f"experiment={name}", "debug=fast", "data=synthetic", "logger=csv"]
    members = _members(compose(base))
    assert len(members) == max(
        1, len([v for vs in SWEEP_AXES[name].values() for v in vs.split(",")])
    )
    for k, member in enumerate(members):
        run_dir = tmp_path / str(k)
        cfg = compose([*base, *member, f"paths.run_dir={run_dir}", "~callbacks.progress_bar"])
        with open_dict(cfg):
            del cfg["hydra"]
        metrics = train(cfg)
        assert (run_dir / "checkpoints" / "last.ckpt").is_file()
        assert math.isfinite(float(metrics["val/loss"])), member


# --------------------------------------------------------------------- loggers, DDP
def test_wandb_is_the_default_logger_and_offline_without_a_key(monkeypatch) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    cfg = compose()
    assert list(cfg.logger) == ["wandb"]
    assert cfg.logger.wandb.project == "catdiff" and cfg.logger.wandb.offline is True
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert compose().logger.wandb.offline is False
    assert compose(["logger.wandb.offline=true"]).logger.wandb.offline is True


def test_several_loggers_at_once() -> None:
    assert set(compose(["logger=[wandb,csv]"]).logger) == {"wandb", "csv"}
    assert set(compose(["logger=tensorboard"]).logger) == {"tensorboard"}
    assert not compose(["logger=none"]).logger


def test_ddp_trainers() -> None:
    cpu = compose(["trainer=ddp_cpu"]).trainer
    assert (cpu.accelerator, cpu.devices, cpu.strategy.process_group_backend) == ("cpu", 2, "gloo")
    assert cpu.strategy._target_ == "catdiff.lightning.ddp.HydraDDPStrategy"
    gpu = compose(["trainer=ddp", "trainer.devices=4"]).trainer
    assert (gpu.accelerator, gpu.devices, gpu.strategy.process_group_backend) == ("gpu", 4, "nccl")
    assert compose(["trainer=ddp"]).trainer.devices is None  # must come from the command line


# -------------------------------------------------------------------------- SLURM
def test_slurm_launcher_asks_one_task_per_gpu_and_a_signal_before_the_limit() -> None:
    cfg = compose(["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4"])
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert launcher["gpus_per_node"] == launcher["tasks_per_node"] == 4
    for key in ("partition", "account", "qos", "cpus_per_task", "mem_gb", "timeout_min"):
        assert key in launcher
    assert launcher["signal_delay_s"] > 0 and launcher["max_num_timeout"] > 0
    assert launcher["setup"]
    cpu = compose(["hydra/launcher=slurm", "trainer=cpu"]).hydra.launcher
    assert cpu.gpus_per_node is None and cpu.tasks_per_node == 1  # no GPUs asked for CPU jobs
    callbacks = compose(["hydra/launcher=slurm"]).callbacks
    assert callbacks.last_checkpoint.requeue_signal == "SIGUSR2"  # submitit's signal


def test_local_launcher_composes() -> None:
    launcher = compose(["hydra/launcher=local"]).hydra.launcher
    assert launcher._target_.endswith("LocalLauncher") and launcher.tasks_per_node == 1


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF / "sampler").glob("*.yaml")))
def test_every_sampler_config_builds(name: str) -> None:
    sampler = instantiate(compose([f"sampler={name}"]).sampler)
    assert sampler.nfe(instantiate(compose(["debug=fast"]).diffusion)) >= 1


def test_t_sampling_and_rederive_eps_reach_the_objects_from_the_config() -> None:
    """diffusion.t_sampling/t_p_* build the lognormal p(t); sampler.rederive_eps the DDIM rule,
    both through training's config and through the sample/evaluate CLIs' flat keys."""
    from catdiff.cli import compose_config

    cfg = compose(["diffusion.t_sampling=lognormal", "diffusion.t_p_mean=0.5", "sampler=ddim"])
    diffusion = instantiate(cfg.diffusion)
    assert diffusion.t_sampling == "lognormal"
    median_t = int((diffusion.t_probs.double().cumsum(0) < 0.5).sum())
    alpha_bar = diffusion.alpha_bar[median_t].item()
    assert ((1 - alpha_bar) / alpha_bar) ** 0.5 == pytest.approx(math.exp(0.5), rel=0.05)
    assert compose().diffusion.t_sampling == "uniform"  # the seed's experiment is unchanged
    assert instantiate(cfg.sampler).rederive_eps is True
    assert (
        instantiate(compose(["sampler=ddim", "sampler.rederive_eps=false"]).sampler).rederive_eps
        is False
    )
    for name in ("sample", "evaluate"):
        flat = compose_config(name, ["ckpt=x", "sampler=ddim", "rederive_eps=false"])
        assert instantiate(flat.sampler).rederive_eps is False
