"""DDP that keeps one run folder per run when Hydra started the job.

Lightning's DDP starts ranks 1..N-1 by re-running ``sys.argv``: in a sweep (``-m``, or an
experiment with ``hydra.mode: MULTIRUN``) every rank would start a sweep of its own, in other
folders, each with its own log file. :class:`HydraDDPStrategy` starts them with this job's
overrides, ``hydra.mode=RUN``, this job's output folder, no ``.hydra/`` copy and console-only
logging: one folder, one checkpoint, one set of metrics. (Under SLURM, SLURM starts the ranks.)
"""

from __future__ import annotations

import os
import subprocess
import sys

import torch
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher


def quote_override_value(value: str) -> str:
    """``value`` quoted for Hydra's override grammar (paths of sweep members hold ``=`` and ``,``)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def rank_command(local_rank: int) -> list[str]:
    """The command that starts rank ``local_rank`` of the current Hydra job."""
    from hydra.core.hydra_config import HydraConfig

    hydra = HydraConfig.get()
    return [
        sys.executable,
        "-m",
        "catdiff.train",
        *hydra.overrides.task,
        "hydra.mode=RUN",
        f"hydra.run.dir={quote_override_value(str(hydra.runtime.output_dir))}",
        "hydra.output_subdir=null",  # rank 0 already wrote .hydra/ (and config.yaml)
        "hydra/job_logging=stdout",  # console only: train.log stays rank 0's
        f"hydra.job.name=rank{local_rank}",
    ]


_LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


class _RunFolderLauncher(_SubprocessScriptLauncher):
    """Lightning's subprocess launcher with :func:`rank_command` under Hydra, and :meth:`finish`."""

    def _call_children_scripts(self) -> None:
        from hydra.core.hydra_config import HydraConfig

        self._saved_env = {k: os.environ.get(k) for k in (*_LAUNCH_ENV, "OMP_NUM_THREADS")}
        self._saved_threads = torch.get_num_threads()
        if not HydraConfig.initialized():
            return super()._call_children_scripts()
        self._check_can_spawn_children()
        self.procs = []
        os.environ["MASTER_ADDR"] = self.cluster_environment.main_address
        os.environ["MASTER_PORT"] = str(self.cluster_environment.main_port)
        os.environ["NODE_RANK"] = str(self.cluster_environment.node_rank())
        os.environ["LOCAL_RANK"] = str(self.cluster_environment.local_rank())
        os.environ["WORLD_SIZE"] = f"{self.num_processes * self.num_nodes}"
        for local_rank in range(1, self.num_processes):
            env = {**os.environ, "LOCAL_RANK": str(local_rank)}
            self.procs.append(subprocess.Popen(rank_command(local_rank), env=env))
        return None

    def finish(self) -> None:
        """After fit: wait for the ranks, close the process group and restore the environment,
        so the next sweep member in this process starts DDP afresh."""
        if not self.procs:
            return
        for proc in self.procs:
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs = []
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        torch.set_num_threads(self._saved_threads)


class HydraDDPStrategy(DDPStrategy):
    """``DDPStrategy`` whose extra ranks reuse the Hydra job's run folder (see module doc)."""

    def _configure_launcher(self) -> None:
        super()._configure_launcher()
        if type(self._launcher) is _SubprocessScriptLauncher:
            self._launcher = _RunFolderLauncher(
                self.cluster_environment, self.num_processes, self.num_nodes
            )

    def teardown(self) -> None:
        super().teardown()
        if isinstance(self._launcher, _RunFolderLauncher):
            self._launcher.finish()
