"""A real one-node SLURM cluster on localhost: a two-member sweep through
``hydra/launcher=slurm``; one member gets SLURM's preemption signal mid-run, saves, requeues
itself, and the requeued job resumes from its last.ckpt and finishes with the same global
step as the member that ran straight through.

Needs Debian's slurmctld, slurmd and slurm-client (``.ci/run`` installs them); run with
``pytest -m slurm``. The daemons run from a temporary folder (state, spool, logs, pid files),
with ``AuthType=auth/none`` (no munge), and are stopped by PID at the end.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT

pytestmark = pytest.mark.slurm

MAX_STEPS = 150


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, condition: Callable[[], object], timeout: float, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _stop(proc: subprocess.Popen) -> None:
    """Stop one daemon we started, by its PID; wait until it is gone (or a zombie)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory) -> Iterator[dict[str, str]]:
    """Start slurmctld + slurmd for one node (this machine); yield the client environment."""
    missing = [b for b in ("slurmctld", "slurmd", "sbatch", "scontrol") if not shutil.which(b)]
    if missing:
        message = f"SLURM not installed ({', '.join(missing)} missing): see .ci/run"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    home = tmp_path_factory.mktemp("slurm")
    (home / "state").mkdir()
    (home / "spool").mkdir()
    user = getpass.getuser()
    conf = home / "slurm.conf"
    conf.write_text(
        f"""ClusterName=catdiff
SlurmctldHost=localhost
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/none
CredType=cred/none
# a requeued job may start again after cred_expire seconds (default 120)
AuthInfo=cred_expire=5
SlurmUser={user}
SlurmdUser={user}
StateSaveLocation={home}/state
SlurmdSpoolDir={home}/spool
SlurmctldPidFile={home}/slurmctld.pid
SlurmdPidFile={home}/slurmd.pid
SlurmctldLogFile={home}/slurmctld.log
SlurmdLogFile={home}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=2
MailProg=/bin/true
ReturnToService=2
KillWait=5
MinJobAge=300
NodeName=localhost NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
    )
    env = {**os.environ, "SLURM_CONF": str(conf)}
    daemons = []
    try:
        for command in (
            ["slurmctld", "-D", "-f", str(conf)],
            ["slurmd", "-D", "-N", "localhost", "-f", str(conf)],
        ):
            log = open(home / f"{command[0]}.out", "w")  # noqa: SIM115 (closed with the process)
            daemons.append(
                subprocess.Popen(
                    command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            )

        def node_idle() -> bool:
            out = subprocess.run(
                ["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True
            ).stdout
            return out.strip() == "idle"

        _wait("the SLURM node to be idle", node_idle, timeout=60)
        yield env
    finally:
        if len(daemons) == 2:
            # Let every job finish completing first: a job step whose daemons are gone keeps
            # its slurmstepd alive, retrying to report.
            subprocess.run(["scancel", "--user", user], env=env, capture_output=True)
            queue = ["squeue", "-h", "-o", "%i"]

            def drained() -> bool:
                out = subprocess.run(queue, env=env, capture_output=True, text=True)
                return out.returncode == 0 and not out.stdout.strip()

            try:
                _wait("the SLURM queue to drain", drained, timeout=60, every=0.5)
            except AssertionError:
                pass  # stop the daemons anyway
        for proc in reversed(daemons):
            _stop(proc)


def _global_step(run_dir: Path) -> int:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]


def _logged_steps(run_dir: Path) -> list[int]:
    import csv

    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        return sorted(int(r["step"]) for r in csv.DictReader(f) if r["train/loss"])


def test_sweep_runs_on_slurm_and_a_preempted_member_requeues_and_resumes(
    slurm: dict[str, str], tmp_path: Path
) -> None:
    sweep = tmp_path / "sweep"
    command = [
        sys.executable,
        "-m",
        "catdiff.train",
        "-m",
        "hydra/launcher=slurm",
        "debug=fast",
        "data=synthetic",
        "logger=csv",
        "trainer=cpu",
        "seed=0,1",
        f"trainer.max_steps={MAX_STEPS}",
        "trainer.val_check_interval=10",
        f"hydra.sweep.dir={sweep}",
        "hydra.launcher.partition=debug",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.mem_gb=1",
        "hydra.launcher.timeout_min=20",
    ]
    env = {**slurm, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}
    started = time.monotonic()
    with open(tmp_path / "sweep.log", "w") as log:
        hydra = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            # Mid-run: member 1 has written its first checkpoint (step 10 of 150).
            first = _wait(
                "member 1's first checkpoint",
                lambda: list(sweep.glob("1_*/checkpoints/last.ckpt")),
                timeout=300,
            )
            member = first[0].parents[1]
            job = _wait(
                "member 1's job id",
                lambda: [p.name for p in (sweep / ".submitit").glob("*_1")],
                timeout=30,
            )[0]
            # What SLURM sends signal_delay_s before the time limit or on preemption
            # (submitit's own test helper sends the same).
            subprocess.run(["scancel", "--signal=USR2", job], env=slurm, check=True)
            hydra.wait(timeout=900)
        finally:
            if hydra.poll() is None:
                hydra.kill()
                subprocess.run(["scancel", "--full", "--name=train"], env=slurm)
    elapsed = time.monotonic() - started
    output = (tmp_path / "sweep.log").read_text()
    assert hydra.returncode == 0, output[-4000:]

    members = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [m.name.split("_")[0] for m in members] == ["0", "1"]
    for run_dir in members:
        assert _global_step(run_dir) == MAX_STEPS, run_dir  # the same as uninterrupted
        assert (run_dir / "metrics.json").is_file()
        every = 5  # debug=fast logs every 5 steps; the history has no gap across the requeue
        assert _logged_steps(run_dir) == list(range(every - 1, MAX_STEPS, every)), run_dir

    log = (member / "train.log").read_text()
    assert "signal received" in log and "to requeue" in log, log[-3000:]
    assert "resuming from" in log and "last.ckpt" in log, log[-3000:]
    stopped_at = int(log.split("and stopping to requeue")[0].rsplit("at step ", 1)[1])
    assert 10 <= stopped_at < MAX_STEPS
    untouched = (members[0] / "train.log").read_text()
    assert "resuming" not in untouched
    print(f"\nSLURM sweep with one preemption + requeue: {elapsed:.0f} s wall")
