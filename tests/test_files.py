"""Artefacts a later command reads are never partial, and user files never run code on load."""

from __future__ import annotations

import errno
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from catdiff.errors import UserError
from catdiff.files import atomic_open, load_tensors, save_torch, write_text
from tests.conftest import ROOT, compose, one_error
from tests.test_cli import run

FAST = ["debug=fast", "data=synthetic", "logger=none"]


class _Payload:
    """Unpickling this runs ``open(marker, 'w')``: the proof that a load executed code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def write_payload_checkpoint(path: Path, marker: Path) -> Path:
    """A file shaped like a catdiff checkpoint whose unpickling creates ``marker``."""
    torch.save({"global_step": 1, "catdiff": {"config": {}}, "hook": _Payload(marker)}, path)
    return path


def test_a_payload_never_runs_even_when_the_environment_forces_unsafe_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "pwned"
    ckpt = write_payload_checkpoint(tmp_path / "evil.ckpt", marker)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(pickle.UnpicklingError):
        load_tensors(ckpt)
    from catdiff.lightning.checkpoint_io import AtomicCheckpointIO

    with pytest.raises(pickle.UnpicklingError):  # even when Lightning asks for an unsafe load
        AtomicCheckpointIO().load_checkpoint(ckpt, weights_only=False)
    assert not marker.exists()
    # The control: torch's default under that switch would have run it.
    torch.load(ckpt)
    assert marker.exists()


def test_resuming_from_a_payload_checkpoint_is_one_line_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    ckpt = write_payload_checkpoint(tmp_path / "evil.ckpt", marker)
    env = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "CATDIFF_OUTPUTS": str(tmp_path / "out")}
    proc = run(["catdiff.train", *FAST, f"ckpt_path={ckpt}"], env=env, check=False)
    message = one_error(proc)
    assert "ckpt_path=" in message and "not a catdiff checkpoint" in message
    assert not marker.exists()


def test_a_write_replaces_the_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "metrics.json"
    write_text(target, "old\n")
    write_text(target, "new\n")
    assert target.read_text() == "new\n"
    assert [p.name for p in target.parent.iterdir()] == ["metrics.json"]  # no temporaries left
    save_torch({"x": torch.arange(3)}, tmp_path / "a.pt")
    assert load_tensors(tmp_path / "a.pt")["x"].tolist() == [0, 1, 2]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_failed_write_is_one_line_and_keeps_the_previous_file(tmp_path: Path, code: int) -> None:
    target = tmp_path / "best-step0000100.ckpt"
    save_torch({"step": 100}, target)

    with pytest.raises(UserError) as caught:
        with atomic_open(target) as f:
            f.write(b"partial checkpoint bytes")
            raise OSError(code, os.strerror(code))
    message = str(caught.value)
    assert "\n" not in message and str(target) in message
    assert ("no space left" in message) == (code == errno.ENOSPC)
    assert load_tensors(target) == {"step": 100}
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_writing_over_a_folder_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    with pytest.raises(UserError, match="is a folder|name is a folder"):
        write_text(tmp_path / "out", "x")


_KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from catdiff.files import write_with

    def slow_writer(f):
        f.write(b"\\0" * (4 << 20))  # the first 4 MB of a big checkpoint...
        f.flush()
        time.sleep(120)              # ...and the kill comes before the rest
        f.write(b"\\0" * (4 << 20))

    write_with(sys.argv[1], slow_writer)
    """
)


def test_a_kill_during_a_checkpoint_write_across_filesystems_keeps_the_previous_one(
    tmp_path: Path,
) -> None:
    """The usual cluster layout: $TMPDIR on a local disk, the run folder elsewhere. A SIGKILL
    mid-write leaves the previous good ``last.ckpt`` readable and nothing partial under it."""
    tmpdir = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    if tmpdir is None or os.stat(tmpdir).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs a $TMPDIR on another filesystem than the test's folder")
    last = tmp_path / "checkpoints" / "last.ckpt"
    save_torch({"global_step": 7, "w": torch.ones(4)}, last)
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(last)], cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            partial = [
                p for p in last.parent.glob(".last.ckpt.*.tmp") if p.stat().st_size >= 4 << 20
            ]
            if partial:
                break
            assert proc.poll() is None, "the writer ended before it was killed"
            time.sleep(0.05)
        else:
            pytest.fail("the writer never started writing")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    state = load_tensors(last)
    assert state["global_step"] == 7 and torch.equal(state["w"], torch.ones(4))
    assert not list(tmpdir.glob("tmp*last.ckpt*"))  # nothing was staged in $TMPDIR


@pytest.mark.parametrize("trainer", ["default", "ddp_cpu", "gpu"])
def test_every_trainer_writes_checkpoints_atomically(trainer: str) -> None:
    from hydra.utils import instantiate

    from catdiff.lightning.checkpoint_io import AtomicCheckpointIO

    cfg = compose([f"trainer={trainer}"])
    plugins = instantiate(cfg.trainer.plugins)
    assert any(isinstance(p, AtomicCheckpointIO) for p in plugins)


def test_runs_started_in_the_same_second_get_their_own_folders() -> None:
    folders = {str(compose(["name=same"]).hydra.run.dir) for _ in range(5)}
    assert len(folders) == 5
    assert all(Path(f).parent.name == "same" for f in folders)
    sweep = compose(["name=same"]).hydra.sweep.dir
    assert Path(str(sweep)).name.startswith("multirun_")


@pytest.mark.parametrize("name", ["../../x", "/etc/x", "a/../../b", ""])
def test_a_name_that_leaves_the_output_root_is_refused(tmp_path: Path, name: str) -> None:
    env = {"CATDIFF_OUTPUTS": str(tmp_path / "out" / "root")}
    message = one_error(run(["catdiff.train", *FAST, f"name={name}"], env=env, check=False))
    assert "name=" in message and "output root" in message
    assert not (tmp_path / "out").exists()  # nothing was written anywhere


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 2.6 MB filesystem of its own (tmpfs; needs root's mount), unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2600k", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small filesystem here (needs root)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_a_full_disk_during_training_is_one_line_and_keeps_good_checkpoints(tiny_disk) -> None:
    """Room for two checkpoints of the tiny model, not three: the save at step 20 fills it."""
    proc = run(
        ["catdiff.train", *FAST, "data.cache_dir=null"],
        env={"CATDIFF_OUTPUTS": str(tiny_disk)},
        check=False,
    )
    assert "no space left" in one_error(proc)
    checkpoints = sorted(tiny_disk.rglob("*.ckpt"))
    assert checkpoints, "the checkpoints saved before the disk filled are gone"
    mask = os.umask(0)
    os.umask(mask)
    for ckpt in checkpoints:
        assert load_tensors(ckpt)["global_step"] == 10  # complete, and the step-10 ones
        assert ckpt.stat().st_mode & 0o777 == 0o666 & ~mask  # the umask's mode, not mkstemp's 0600
    assert not list(tiny_disk.rglob(".*.tmp"))  # no temporary left behind either
