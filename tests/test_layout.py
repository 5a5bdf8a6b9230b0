"""The package's shape, held by a test: subpackages that name the parts, imports one way, small modules.

Every import counts, at any depth (function-level and ``TYPE_CHECKING`` ones included), since a
lazy import is still a dependency a reader has to follow (docs/architecture.md).
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import torchgan_lite
from torchgan_lite import GANTrainer

PKG = Path(torchgan_lite.__file__).parent

#: The parts, lowest first: a part may import only parts before it (and itself).
ORDER = ("utils", "nets", "losses", "data", "checkpoints", "metrics", "training", "callbacks", "recipes", "cli")
#: Top-level modules besides ``__init__`` and the parts: the ``python -m`` entry points (shims into ``cli``).
SHIMS = ("train", "sample", "evaluate")
MAX_LINES = 450


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(PKG).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(path: Path) -> set[str]:
    """Every ``torchgan_lite`` module this file imports, at any depth, as a dotted path inside the package."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import (the package imports by absolute paths)"
            if node.module and (node.module == "torchgan_lite" or node.module.startswith("torchgan_lite.")):
                base = node.module[len("torchgan_lite"):].lstrip(".")
                for alias in node.names:
                    found.add(f"{base}.{alias.name}" if base else alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("torchgan_lite."):
                    found.add(alias.name[len("torchgan_lite."):])
    return found


def _part(name: str) -> str:
    return name.split(".")[0]


MODULES = _modules()


def test_the_top_level_holds_the_parts_and_a_few_modules():
    top = sorted(n for n in MODULES if n and "." not in n and not (PKG / n).is_dir())
    assert len(top) <= 12, top
    assert set(top) <= {"recipes", *SHIMS}, top
    parts = sorted(p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    assert set(parts) == set(ORDER) - {"recipes"}


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n), ids=str)
def test_no_module_is_over_the_line_budget(name):
    lines = MODULES[name].read_text().count("\n")
    assert lines <= MAX_LINES, f"{MODULES[name]} has {lines} lines (budget {MAX_LINES})"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n), ids=str)
def test_imports_run_one_way_between_the_parts(name):
    mine = ORDER.index(_part(name)) if _part(name) in ORDER else len(ORDER)  # a shim sits above everything
    for target in _imports(MODULES[name]):
        theirs = _part(target)
        assert theirs in ORDER, f"{name} imports torchgan_lite.{target}, outside the parts"
        assert ORDER.index(theirs) <= mine, f"{name} ({_part(name)}) imports upwards: torchgan_lite.{target}"


def test_no_import_cycle_between_modules():
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        if not name:
            continue
        deps = set()
        for target in _imports(path):
            while target and target not in MODULES:  # "nets.mlp.mlp_generator" -> the module "nets.mlp"
                target = target.rpartition(".")[0]
            if target and target != name and MODULES[target].name != "__init__.py":
                deps.add(target)
        graph[name] = deps
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*trail[trail.index(nxt):], nxt]))
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])


@pytest.mark.parametrize("part", [p for p in ORDER if p != "recipes"])
def test_only_the_top_level_init_re_exports(part):
    tree = ast.parse((PKG / part / "__init__.py").read_text())
    body = tree.body
    assert body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant), \
        f"{part}/__init__.py must start with a docstring saying what the part owns"
    assert len(body[0].value.value.split()) >= 15, f"{part}/__init__.py: a one-paragraph docstring, please"
    for node in body[1:]:
        assert not isinstance(node, (ast.Import, ast.ImportFrom)), f"{part}/__init__.py imports (re-exports)"


def test_every_public_name_is_importable_from_the_top_level():
    for name in torchgan_lite.__all__:
        assert hasattr(torchgan_lite, name), name
    assert len(torchgan_lite.__all__) == len(set(torchgan_lite.__all__))


def test_the_trainer_takes_at_most_ten_arguments():
    assert len(inspect.signature(GANTrainer.__init__).parameters) - 1 <= 10
