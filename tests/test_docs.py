"""The documentation's code runs as written, and every module path it names exists.

- Every ```python block of README.md and docs/*.md whose leading imports include
  ``torchgan_lite`` compiles, and every name it imports from the package exists.
- README's Usage block and api.md's "Write your own" blocks are run, on a tiny stand-in for
  MNIST (256 random images in [-1, 1] instead of 60,000, so 2 steps an epoch, and
  ``epochs=20`` cut to 5 by substitution): under 4 s together on one thread of a 2-core CPU.
- Every dotted path ``torchgan_lite.X.Y`` in README.md and docs/*.md resolves (the module
  part imported, the rest by ``getattr``), except the changelog's "0.1" column, which names
  what no longer exists on purpose; so does every ``torchgan_lite/....py`` file path.
- README.md holds exactly two fenced bash blocks with ``python3 -m venv`` (the two commands).

The checks are parametrized by file, so a failure names the document (and its owner) at once.
"""

from __future__ import annotations

import ast
import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

import torchgan_lite
from torchgan_lite import NonSaturatingLoss, TensorLoader, load_checkpoint

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
ALL_DOCS = [README, *DOCS]

#: ``torchgan_lite.a.b``, not followed by ``/`` (a format string such as ``torchgan_lite.checkpoint/2``).
DOTTED = re.compile(r"(?<![\w./])torchgan_lite(?:\.[A-Za-z_]\w*)+(?![\w/])")
FILE_PATH = re.compile(r"(?<![\w./])torchgan_lite/[\w/]+\.py\b")
IMPORT_LINE = re.compile(r"(?:from|import)\s+torchgan_lite\b")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown file."""

    path: Path
    line: int  # where its opening fence is, counted from 1
    lang: str
    section: str  # the nearest heading above it, without the #s
    code: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def _blocks(path: Path) -> list[Block]:
    """The fenced blocks of ``path``, dedented (a block inside a list item is indented)."""
    out: list[Block] = []
    body: list[str] = []
    lang: str | None = None
    section, start, indent = "", 0, 0
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = raw.strip()
        if lang is None:
            if text.startswith("```"):
                lang, start, body, indent = text[3:].strip(), n, [], len(raw) - len(raw.lstrip())
            elif raw.startswith("#"):
                section = raw.lstrip("#").strip()
        elif text == "```":
            out.append(Block(path, start, lang, section, "\n".join(line[indent:] for line in body) + "\n"))
            lang = None
        else:
            body.append(raw)
    assert lang is None, f"{path.relative_to(REPO)}:{start}: a code fence is never closed"
    return out


def _imports_torchgan_lite_first(code: str) -> bool:
    """Whether the block's leading import statements (before any other code) import ``torchgan_lite``."""
    depth = 0
    for raw in code.splitlines():
        line = raw.split("#", 1)[0].strip()
        if depth == 0:
            if not line:
                continue
            if not line.startswith(("import ", "from ")):
                return False
            if IMPORT_LINE.match(line):
                return True
        depth += line.count("(") - line.count(")")
    return False


def _python_blocks(path: Path) -> list[Block]:
    return [b for b in _blocks(path) if b.lang == "python" and _imports_torchgan_lite_first(b.code)]


def _resolves(dotted: str) -> bool:
    """Import the longest module prefix of ``dotted``, then ``getattr`` the rest."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        name = ".".join(parts[:i])
        try:
            obj: object = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is None or not (name == err.name or name.startswith(err.name + ".")):
                raise  # a real module failing on a missing dependency: not a stale name
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def _without_old_columns(text: str) -> str:
    """``text`` with the first cell of every row of a table whose header's first cell is ``0.1`` blanked."""
    out, old_table = [], False
    for line in text.splitlines():
        cells = line.split("|")
        if line.lstrip().startswith("|") and len(cells) > 2:
            if cells[1].strip() == "0.1":
                old_table = True
            if old_table:
                cells[1] = " "
                line = "|".join(cells)
        else:
            old_table = False
        out.append(line)
    return "\n".join(out)


def _doc_id(path: Path) -> str:
    return str(path.relative_to(REPO))


# --------------------------------------------------------------------------- (a) the code blocks


def test_the_documents_hold_python_blocks() -> None:
    """The scan below finds the blocks it is meant to check (a broken fence parser would pass vacuously)."""
    found = {_doc_id(p): len(_python_blocks(p)) for p in ALL_DOCS}
    assert found["README.md"] >= 1 and found["docs/api.md"] >= 4 and found["docs/own-images.md"] >= 3, found


@pytest.mark.parametrize("path", ALL_DOCS, ids=_doc_id)
def test_python_blocks_compile_and_their_imports_exist(path: Path) -> None:
    problems = []
    for block in _python_blocks(path):
        try:
            tree = compile(block.code, block.where, "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)
        except SyntaxError as err:
            problems.append(f"{block.where}: does not compile: {err}")
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                    and node.module.split(".")[0] == "torchgan_lite":
                module: ModuleType = importlib.import_module(node.module)
                for alias in node.names:
                    if not hasattr(module, alias.name) and not _resolves(f"{node.module}.{alias.name}"):
                        problems.append(f"{block.where}: `from {node.module} import {alias.name}`: no such name")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "torchgan_lite" and not _resolves(alias.name):
                        problems.append(f"{block.where}: `import {alias.name}`: no such module")
    assert not problems, "\n".join(problems)


def _section(path: Path, heading: str) -> list[Block]:
    blocks = [b for b in _blocks(path) if b.lang == "python" and b.section == heading]
    assert blocks, f"{path.name} has no python block under the heading {heading!r}"
    return blocks


def _tiny_mnist(n: int = 256) -> torch.Tensor:
    """``n`` random images ``(n, 1, 28, 28)`` in [-1, 1], MNIST's shape and range."""
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 28, 28, generator=g) * 2 - 1


def test_readme_usage_runs_as_written(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    (block,) = _section(README, "Usage")
    assert block.code.count("epochs=20") == 1, "the Usage block's epochs changed: update the substitution"
    code = block.code.replace("epochs=20", "epochs=5")
    calls = []

    def tiny_mnist(*args: object, **kwargs: object) -> torch.Tensor:
        calls.append((args, kwargs))
        return _tiny_mnist()

    monkeypatch.setattr(torchgan_lite, "mnist", tiny_mnist)
    monkeypatch.chdir(tmp_path)
    ns: dict[str, Any] = {"__name__": "readme_usage"}
    exec(compile(code, block.where, "exec"), ns)

    assert len(calls) == 1  # the block read "MNIST" through the stand-in, not from disk
    trainer = ns["trainer"]
    assert trainer.state.epoch == 5 and trainer.state.step == 10
    assert "epoch 5: D " in capsys.readouterr().out  # the every=5 handler ran, once
    assert tuple(ns["images"].shape) == (64, 1, 28, 28)
    saved = load_checkpoint(tmp_path / "runs" / "ckpt.pt")
    assert saved["trainer"]["step"] == 10


def test_api_write_your_own_runs_as_written(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    blocks = _section(REPO / "docs" / "api.md", "Write your own")
    assert len(blocks) == 3, "api.md's Write your own section: a generator, a loss, a hook"
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    ns: dict[str, Any] = {"__name__": "api_write_your_own"}
    trainers = []
    for block in blocks:  # in order, in one namespace, as a reader pastes them
        exec(compile(block.code, block.where, "exec"), ns)
        trainers.append(ns["trainer"])
    data = _tiny_mnist(64)

    # The generator: any module with latent_dim, trained by the trainer as it is.
    conv_trainer = trainers[0]
    assert type(conv_trainer.generator).__name__ == "ConvG"
    assert tuple(conv_trainer.sample(3).shape) == (3, 1, 28, 28)
    before = [p.detach().clone() for p in conv_trainer.generator.parameters()]
    conv_trainer.fit(TensorLoader(data, batch_size=32), epochs=1)
    after = list(conv_trainer.generator.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(after, before))

    # The loss: what the page says it is, the recipe's BCE with one-sided label smoothing.
    smoothed, reference = ns["SmoothedBCE"](), NonSaturatingLoss(real_label=0.9)
    real, fake = torch.randn(16) * 3, torch.randn(16) * 3
    torch.testing.assert_close(smoothed.discriminator_loss(real, fake), reference.discriminator_loss(real, fake))
    torch.testing.assert_close(smoothed.generator_loss(fake), reference.generator_loss(fake))

    # The hook: the snapshot runs every 5 epochs; the removed stop handler never runs.
    assert ns["stop"].active is False
    hooked = trainers[2]
    assert hooked is trainers[1]  # the hook block attaches to the trainer of the loss block
    hooked.fit(TensorLoader(data, batch_size=32), epochs=5)
    assert hooked.state.step == 10
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["epoch_005.png"]


# --------------------------------------------------------------------------- (b) module and file paths


@pytest.mark.parametrize("path", ALL_DOCS, ids=_doc_id)
def test_every_dotted_path_resolves(path: Path) -> None:
    text = _without_old_columns(path.read_text(encoding="utf-8"))
    named = sorted(set(DOTTED.findall(text)))
    missing = [name for name in named if not _resolves(name)]
    assert not missing, f"{_doc_id(path)} names paths that do not exist: {', '.join(missing)}"


@pytest.mark.parametrize("path", ALL_DOCS, ids=_doc_id)
def test_every_package_file_path_exists(path: Path) -> None:
    text = _without_old_columns(path.read_text(encoding="utf-8"))
    missing = sorted({p for p in FILE_PATH.findall(text) if not (REPO / p).is_file()})
    assert not missing, f"{_doc_id(path)} names files that do not exist: {', '.join(missing)}"


def test_the_path_checks_catch_a_stale_name() -> None:
    """What the two checks above rely on: old names fail, new ones pass, format strings are not paths."""
    assert _resolves("torchgan_lite.nets.mlp.mlp_generator") and _resolves("torchgan_lite.StepConfig")
    assert not _resolves("torchgan_lite.models") and not _resolves("torchgan_lite.losses.NonSaturatingLoss")
    assert DOTTED.findall("format `torchgan_lite.checkpoint/2`; `torchgan_lite.nets.dcgan`.") == [
        "torchgan_lite.nets.dcgan"]
    table = "| 0.1 | 0.2 |\n|---|---|\n| `torchgan_lite.models` | `torchgan_lite.nets.mlp` |\n\nafter"
    assert DOTTED.findall(_without_old_columns(table)) == ["torchgan_lite.nets.mlp"]


# --------------------------------------------------------------------------- (c) the two commands


def test_readme_holds_exactly_the_two_commands() -> None:
    venv = [b for b in _blocks(README) if b.lang == "bash" and "python3 -m venv" in b.code]
    assert len(venv) == 2, [b.where for b in venv]
    assert all("torch==2.14.1 torchvision==0.29.1" in b.code for b in venv)
    assert "examples/mnist_mlp.py" in venv[0].code and "-m pytest" in venv[1].code
