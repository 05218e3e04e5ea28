"""Imports go downward only: every import in every file under catdiff/ obeys :data:`LAYERS`.

The rule (written out for readers in catdiff/ARCHITECTURE.md) is the data below; the checker
reads every ``import`` statement with :mod:`ast` -- module level, inside functions, under
``if TYPE_CHECKING:``, in ``try`` blocks, relative ones -- and ``importlib.import_module``
calls with a literal name, so an upward import cannot hide in a function body. The pure layers
are also imported for real in a fresh interpreter, to show that they load no Lightning or Hydra
(a researcher can fork or reuse them without the framework).
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

# ----------------------------------------------------------------------------- the rule
# Layers from the bottom up. A module may import: anything in its own unit (a package or a
# top-level module), every unit of a LOWER layer, and the units of its own layer listed
# beside it (its allowed sideways imports). Nothing else under catdiff/; in particular no
# entry point imports another, and nothing imports an entry point.
LAYERS: dict[str, dict[str, tuple[str, ...]]] = {
    "base": {  # no catdiff imports but these; no framework
        "catdiff": (),  # the package's __init__: the version
        "catdiff.errors": (),
        "catdiff.files": ("catdiff.errors",),  # atomic writes, pickle-free loads
        "catdiff.images": ("catdiff.files",),
        "catdiff.allocator": (),
        "catdiff.precision": (),
        "catdiff.machine": ("catdiff.allocator", "catdiff.precision"),
    },
    "pure": {  # pure torch: the maths, the network, the data, the scores
        "catdiff.diffusion": (),
        "catdiff.models": (),
        "catdiff.data": (),
        "catdiff.metrics": ("catdiff.diffusion", "catdiff.data"),  # NLL, Sobel feature spaces
    },
    "glue": {  # Hydra/OmegaConf and Lightning meet the pure layers here
        "catdiff.config": (),
        "catdiff.runtime": (),
        "catdiff.validate": (),  # the rules every entry point checks its config against
        "catdiff.cli": ("catdiff.config", "catdiff.validate"),
        "catdiff.checkpoints": ("catdiff.config",),
        "catdiff.lightning": ("catdiff.config", "catdiff.checkpoints"),
        "catdiff.resume": ("catdiff.lightning",),
    },
    "entry": {  # python -m catdiff.<x>: compose, build, run, write
        "catdiff.train": (),
        "catdiff.sample": (),
        "catdiff.evaluate": (),
        "catdiff.report": (),
    },
}
# Third-party packages no module under catdiff/ imports: the diffusers oracle and the
# benchmark/comparison code live under experiments/ and import catdiff, never the reverse.
FORBIDDEN_EVERYWHERE = ("experiments", "diffusers", "tests")
# ... and the frameworks the base and pure layers do without.
FRAMEWORKS = ("lightning", "pytorch_lightning", "hydra", "omegaconf", "wandb", "submitit")
FRAMEWORK_FREE = ("base", "pure")


# -------------------------------------------------------------------------- the checker
@dataclass(frozen=True)
class Violation:
    path: str  # relative to the tree's root, with "/"
    line: int
    imported: str
    why: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: imports {self.imported}: {self.why}"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit_of(module: str) -> tuple[str, str] | None:
    """(layer, unit) of a catdiff module: the longest unit that is it or a package above it
    (the unit ``catdiff`` is the package's ``__init__`` only, not everything in it)."""
    best: tuple[str, str] | None = None
    for layer, units in LAYERS.items():
        for unit in units:
            inside = module.startswith(unit + ".") and unit != "catdiff"
            if (module == unit or inside) and (best is None or len(unit) > len(best[1])):
                best = (layer, unit)
    return best


def imports_of(path: Path, module: str, known: set[str]) -> list[tuple[int, str]]:
    """(line, absolute module name) for every import in the file, at any depth.

    ``from a import b`` names ``a.b`` when that is a module of the tree (a submodule), else
    ``a``; relative imports are resolved against the file's package.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                found.append((node.lineno, sub if sub in known else source))
        elif (
            isinstance(node, ast.Call)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (
                    isinstance(node.func, ast.Name)
                    and node.func.id in ("import_module", "__import__")
                )
            )
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return list(dict.fromkeys(found))  # one per module and line: `from a import b, c`


def check(root: Path) -> list[Violation]:
    """Every import under ``root/catdiff`` that breaks the rule, in file and line order."""
    files = sorted((root / "catdiff").rglob("*.py"))
    known = {module_name(f, root) for f in files}
    order = list(LAYERS)
    violations = []
    for file in files:
        rel = file.relative_to(root).as_posix()
        module = module_name(file, root)
        here = unit_of(module)
        if here is None:
            violations.append(
                Violation(
                    rel, 1, module, "in no layer: add its unit to LAYERS (tests/test_layers.py)"
                )
            )
            continue
        layer, unit = here
        for line, imported in imports_of(file, module, known):
            top = imported.split(".")[0]
            why = None
            if top in FORBIDDEN_EVERYWHERE:
                why = f"nothing under catdiff/ imports {top}"
            elif top in FRAMEWORKS and layer in FRAMEWORK_FREE:
                why = f"{unit} ({layer}) imports no framework ({', '.join(FRAMEWORKS)})"
            elif top == "catdiff":
                target = unit_of(imported)
                if target is None:
                    why = f"{imported} is in no layer"
                else:
                    other_layer, other = target
                    upward = order.index(other_layer) > order.index(layer)
                    if upward:
                        why = f"{unit} ({layer}) imports upward into {other} ({other_layer})"
                    elif (
                        other_layer == layer and other != unit and other not in LAYERS[layer][unit]
                    ):
                        why = f"{unit} imports sideways from {other} ({layer}), not allowed"
            if why is not None:
                violations.append(Violation(rel, line, imported, why))
    return violations


# ------------------------------------------------------------------------------- tests
def test_every_import_under_catdiff_goes_downward() -> None:
    violations = check(ROOT)
    assert not violations, "imports against the layers:\n" + "\n".join(map(str, violations))


# kind -> (code appended to a pure module, the import the checker must name); the bad import
# is the line marked "# planted".
PLANTED = {
    "function": ("def later():\n    import catdiff.train  # planted\n", "catdiff.train"),
    "from": (
        "def later():\n    from catdiff.lightning import module  # planted\n",
        "catdiff.lightning.module",
    ),
    "relative": (
        "def later():\n    from ..lightning.module import DiffusionModule  # planted\n",
        "catdiff.lightning.module",
    ),
    "type_checking": (
        "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n"
        "    from catdiff.config import build  # planted\n",
        "catdiff.config",
    ),
    "try": ("try:\n    import hydra  # planted\nexcept ImportError:\n    hydra = None\n", "hydra"),
    "sideways": ("def later():\n    from .. import data  # planted\n", "catdiff.data"),
    "dynamic": (
        "import importlib\n\nimportlib.import_module('catdiff.sample')  # planted\n",
        "catdiff.sample",
    ),
    "diffusers": ("def later():\n    from diffusers import UNet2DModel  # planted\n", "diffusers"),
}


@pytest.mark.parametrize("kind", list(PLANTED))
def test_a_planted_upward_import_fails_with_its_file_and_line(tmp_path: Path, kind: str) -> None:
    """The same checker, on a copy of the package with one bad import planted in a pure module
    (catdiff/diffusion/schedules.py may use only the base layer), names that file and line."""
    shutil.copytree(ROOT / "catdiff", tmp_path / "catdiff")
    target = tmp_path / "catdiff" / "diffusion" / "schedules.py"
    assert not [v for v in check(tmp_path) if v.path == "catdiff/diffusion/schedules.py"]
    code, imported = PLANTED[kind]
    target.write_text(target.read_text() + "\n\n" + code)
    lines = target.read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if text.endswith("# planted"))
    found = [str(v) for v in check(tmp_path) if v.path == "catdiff/diffusion/schedules.py"]
    assert len(found) == 1, found
    assert found[0].startswith(f"catdiff/diffusion/schedules.py:{line}: imports {imported}: ")


def test_a_module_outside_every_layer_is_reported(tmp_path: Path) -> None:
    (tmp_path / "catdiff").mkdir()
    (tmp_path / "catdiff" / "stray.py").write_text("import os\n")
    assert [str(v) for v in check(tmp_path)] == [
        "catdiff/stray.py:1: imports catdiff.stray: in no layer: add its unit to LAYERS "
        "(tests/test_layers.py)"
    ]


def test_the_architecture_doc_names_every_unit_of_the_rule() -> None:
    """catdiff/ARCHITECTURE.md is the readers' copy of LAYERS: it names each unit."""
    doc = (ROOT / "catdiff" / "ARCHITECTURE.md").read_text()
    missing = [u for units in LAYERS.values() for u in units if u != "catdiff" and u not in doc]
    assert not missing, f"catdiff/ARCHITECTURE.md does not name {missing}"


@pytest.mark.parametrize(
    "modules",
    [
        "catdiff.diffusion",
        "catdiff.models",
        "catdiff.data",
        "catdiff.metrics",
        "catdiff.errors, catdiff.images, catdiff.allocator, catdiff.precision",
    ],
)
def test_pure_and_base_layers_load_no_lightning_or_hydra(modules: str) -> None:
    code = (
        f"import sys, {modules}; "
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'lightning', 'pytorch_lightning', 'hydra', 'omegaconf'}); "
        "print(','.join(heavy))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "", f"{modules} imports {proc.stdout.strip()}"
