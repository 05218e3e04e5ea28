"""``pip install .`` gives a catdiff that runs from any folder: conf/ ships inside the package.

The new environment gets no copy of torch: a ``.pth`` file puts this environment's
site-packages on its path for the dependencies (a ``.pth`` line adds a folder, it does not
process the folder's own ``.pth`` files, so this checkout's editable install stays out).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from tests.conftest import ROOT


def _install(tmp_path: Path) -> Path:
    """A fresh venv with catdiff installed non-editable from a copy of this checkout."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "catdiff", source / "catdiff", symlinks=True, ignore=ignore)
    shutil.copytree(ROOT / "conf", source / "conf")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "catdiff_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            sys.executable,
            *("-m", "pip", "--python", str(python), "install", "-q"),
            *("--no-deps", "--no-build-isolation", "--no-index", str(source)),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    shutil.rmtree(source)  # nothing of the checkout left to import from
    return python


def test_installed_package_trains_and_samples_from_another_folder(tmp_path: Path) -> None:
    python = _install(tmp_path)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CATDIFF_OUTPUTS")}
    env.update({"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"})

    def run(*args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [python, *args], cwd=work, env=env, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    where = run("-c", "import catdiff, catdiff.config as c; print(catdiff.__file__, c.conf_dir())")
    module, conf = where.stdout.split()
    assert Path(module).is_relative_to(tmp_path / "venv"), module
    assert Path(conf).is_relative_to(tmp_path / "venv") and Path(conf, "train.yaml").is_file()

    run("-m", "catdiff.train", "debug=fast", "data=synthetic", "logger=none")
    (run_dir,) = (work / "outputs" / "baseline").iterdir()  # the default run folder, here
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert ckpt.is_file() and (run_dir / "config.yaml").is_file()
    out = work / "samples"
    run("-m", "catdiff.sample", f"ckpt={ckpt}", "n=2", "sampler=ddim", "steps=2", f"out={out}")
    assert (out / "grid.png").is_file()
