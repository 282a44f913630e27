"""The packages depend one way, search -> spaces -> trainer, and the trial spec depends on
nothing: checked statically on every import statement of every module (relative ones and
ones inside functions included), so an import that breaks the layering fails here before
any code path happens to run it. The checker is also run on planted bad imports, so it
cannot pass by finding nothing."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("search", "spaces", "trainer")  # each may import only the layers after it
RAY_ONLY_IN = "search/runner.py"  # Ray's API changes between versions: one module wraps it
LEAF = "trainer/spec.py"  # the plain trial description every layer reads


def imported_packages(path: Path, root: Path) -> Iterator[tuple[int, str]]:
    """(line, top-level package) for every module an import statement in `path` names."""
    parts = path.relative_to(root).with_suffix("").parts
    package = parts[:-1] if parts[-1] != "__init__" else parts
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: max(0, len(package) - node.level + 1)]) if node.level else []
            if node.module:
                names = [".".join([*base, node.module])]
            else:  # `from . import x`: x is a module of the package (or of none, at the top)
                names = [".".join([*base, alias.name]) for alias in node.names]
        else:
            continue
        for name in names:
            yield node.lineno, name.split(".")[0]


def violations(root: Path) -> list[str]:
    """Every import under `root`'s packages that breaks a layering rule, as "file:line: why"."""
    found = []
    for layer, package in enumerate(LAYERS):
        for path in sorted((root / package).rglob("*.py")):
            name = path.relative_to(root).as_posix()
            for line, top in imported_packages(path, root):
                where = f"{name}:{line}"
                if top in LAYERS[:layer]:
                    found.append(f"{where}: {package} imports {top} (search -> spaces -> trainer)")
                if top == "ray" and name != RAY_ONLY_IN:
                    found.append(f"{where}: imports ray (only {RAY_ONLY_IN} may)")
                if name == LEAF and top in LAYERS:
                    found.append(f"{where}: {LEAF} imports the project ({top})")
    return found


def test_the_project_keeps_its_layers() -> None:
    assert violations(ROOT) == []


def write(root: Path, name: str, source: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)


def test_the_checker_finds_every_kind_of_bad_import(tmp_path: Path) -> None:
    bad = {
        "trainer/__init__.py": "",
        "trainer/_bad.py": "import torch\nimport search\n",
        "trainer/data/_bad.py": "def f():\n    from spaces.space import Space\n",
        "trainer/data/_up.py": "from ...search import cli\n",  # relative, past the top
        "trainer/spec.py": "from dataclasses import dataclass\nfrom .techniques import base\n",
        "trainer/_ray.py": "import os, ray.tune\n",
        "spaces/_bad.py": "from search import cli\n",
        "search/other.py": "from ray import tune\n",
    }
    fine = {
        "search/runner.py": "import ray\nfrom spaces import Space\nimport trainer.spec\n",
        "spaces/space.py": "from trainer.spec import Value\nfrom . import presets\n",
        "trainer/data/load.py": "from ..spec import Value\nfrom . import arrays\n",
        "trainer/_near.py": "import searchlight\nimport rayon\nimport spaces_extra\n",
    }
    for name, source in {**bad, **fine}.items():
        write(tmp_path, name, source)
    assert sorted(violations(tmp_path)) == [
        "search/other.py:1: imports ray (only search/runner.py may)",
        "spaces/_bad.py:1: spaces imports search (search -> spaces -> trainer)",
        "trainer/_bad.py:2: trainer imports search (search -> spaces -> trainer)",
        "trainer/_ray.py:1: imports ray (only search/runner.py may)",
        "trainer/data/_bad.py:2: trainer imports spaces (search -> spaces -> trainer)",
        "trainer/data/_up.py:1: trainer imports search (search -> spaces -> trainer)",
        "trainer/spec.py:2: trainer/spec.py imports the project (trainer)",
    ]


def test_a_bad_import_planted_in_the_real_tree_fails(tmp_path: Path) -> None:
    for package in LAYERS:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.pyc"))
    write(tmp_path, "trainer/_bad.py", "import search\n")
    assert violations(tmp_path) == [
        "trainer/_bad.py:1: trainer imports search (search -> spaces -> trainer)"
    ]


def test_importing_the_spec_loads_neither_torch_nor_the_registry() -> None:
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r}); import trainer.spec; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'trainer')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["['trainer',", "'trainer.spec']"]
