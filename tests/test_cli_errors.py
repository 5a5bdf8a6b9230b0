"""Every command line, every option, bad values: one ``error:`` line naming the option, exit status 2.

The options are read off the parsers themselves (``train.build_parser``, ``sample.build_parser``,
``evaluate.build_parser``), so an option added later is driven here too: by the kind of
value its argparse type takes (numbers: fixed bad values, then Hypothesis-generated text
that Python's own ``int``/``float`` says is out of range or not a number at all; choices;
flags given a value), and by the paths and names in :data:`SEMANTIC`. An option that fits
neither fails :func:`test_every_option_has_bad_values` until its bad values are added.

Everything runs in process (``main([...])`` returns the status; stderr captured); the
training runs get tiny synthetic data and networks (tests/_cli_worker.py), so a bad value
that were accepted would train for one step and fail the test rather than run for hours.
A read-only location is a path under a regular file or under ``/proc``: as root, a chmod'ed
folder is still writable.
"""

from __future__ import annotations

import argparse
import io
import math
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torchgan_lite import GANTrainer, seed_everything
from torchgan_lite.cli import common, evaluate, sample, train
from torchgan_lite.losses import adversarial as losses
from torchgan_lite.nets import mlp

from . import _cli_worker as worker


def _int_in(low: float, high: float) -> Callable[[str], bool]:
    def valid(text: str) -> bool:
        try:
            return low <= int(text) < high
        except ValueError:
            return False
    return valid


def _float_in(ok: Callable[[float], bool]) -> Callable[[str], bool]:
    def valid(text: str) -> bool:
        try:
            return ok(float(text))
        except ValueError:
            return False
    return valid


#: For each argparse type of the commands: what a valid value is, by Python's own reading of the text
#: (the oracle Hypothesis filters on), and fixed bad values that must always be refused.
NUMBERS: dict[Callable[[str], object], tuple[Callable[[str], bool], list[str]]] = {
    common.positive_int: (_int_in(1, math.inf), ["0", "-1", "1.5", "abc", "", "1e3", "nan"]),
    common.non_negative_int: (_int_in(0, math.inf), ["-1", "1.5", "abc", "", "nan"]),
    common.positive_float: (_float_in(lambda v: math.isfinite(v) and v > 0),
                            ["0", "-1", "nan", "inf", "-inf", "1e999", "abc", ""]),
    common.unit_fraction: (_float_in(lambda v: 0 <= v < 1), ["1", "1.5", "-0.1", "nan", "inf", "abc", ""]),
    common.seed: (_int_in(0, 2**32), ["-1", str(2**32), str(2**70), "1180591620717411303424", "1.5", "abc", ""]),
}
PATHS = (common.path_arg, common.output_file, common.output_dir)


# --------------------------------------------------------------------------- the places and files bad paths name


@dataclass(frozen=True)
class Places:
    root: Path
    checkpoint: Path  # a valid checkpoint of an unconditional 1x28x28 generator
    text_file: Path  # a regular file that is not a checkpoint
    empty_dir: Path

    @property
    def under_file(self) -> Path:  # cannot be created or written, whoever runs the test
        return self.text_file / "out"


def _value(places: Places, kind: str) -> str:
    return {
        "missing": str(places.root / "no-such-thing"),
        "folder": str(places.empty_dir),
        "text file": str(places.text_file),
        "under a file": str(places.under_file),
        "under a file (png)": str(places.under_file / "grid.png"),
        "under /proc": "/proc/torchgan-lite-test/out",
    }[kind]


#: Bad values of options whose type says little (paths, free strings) or whose badness is in the
#: context: {(command, dest): [place kinds or literal values]}. A "+" entry adds options.
SEMANTIC: dict[tuple[str, str], list[str | list[str]]] = {
    ("train", "data"): ["", "missing", "folder", "text file"],
    ("train", "eval_features"): ["missing", ["--eval-every", "1", "--eval-features", "bogus-extractor"]],
    ("train", "image_size"): [["--arch", "dcgan", "--image-size", "48"]],
    ("train", "channels"): ["2"],
    ("train", "out"): ["text file", "under a file", "under /proc"],
    ("train", "resume"): ["folder", "missing", "text file"],
    ("train", "data_root"): ["missing", "text file"],
    ("train", "subset"): ["1000000"],
    ("train", "batch_size"): ["1000000"],
    ("train", "norm"): [["--norm", "spectral", "--arch", "mlp"]],
    ("train", "eval_n"): [["--conditional", "--eval-every", "1", "--eval-n", "5"]],
    ("sample", "checkpoint"): ["missing", "folder", "text file"],
    ("sample", "out"): ["folder", "under a file (png)", "under /proc"],
    ("sample", "tensor"): ["folder", "under a file (png)", "under /proc"],
    ("sample", "device"): ["bogus", "cuda:99"],
    ("sample", "digit"): ["0"],  # the checkpoint's generator is unconditional
    ("sample", "label"): ["", "0", "cats", ["--label", "0", "--digit", "0"]],
    ("evaluate", "checkpoint"): ["missing", "folder", "text file"],
    ("evaluate", "json"): ["folder", "under a file (png)", "under /proc"],
    ("evaluate", "device"): ["bogus", "cuda:99"],
    ("evaluate", "data"): ["missing"],
    ("evaluate", "data_split"): ["no-such-split"],
    ("evaluate", "features"): ["missing"],
    ("evaluate", "data_root"): ["text file"],
}


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> Places:
    root = tmp_path_factory.mktemp("cli_errors")
    seed_everything(0)
    g = mlp.mlp_generator(latent_dim=8, hidden=(16,), out_shape=(1, 28, 28))
    d = mlp.mlp_discriminator(in_shape=(1, 28, 28), hidden=(16,), dropout=0.0)
    checkpoint = GANTrainer(g, d, losses.NonSaturatingLoss(), device="cpu").save_checkpoint(root / "ckpt.pt")
    (root / "notes.txt").write_text("not a checkpoint\n")
    (root / "empty").mkdir()
    return Places(root, checkpoint, root / "notes.txt", root / "empty")


# --------------------------------------------------------------------------- the commands


@dataclass(frozen=True)
class Command:
    name: str  # the SEMANTIC key
    parser: Callable[[], argparse.ArgumentParser]
    invoke: Callable[[Places, list[str], str], int]  # (places, options, dest under test) -> status


def _train(defaults: train.CLIDefaults) -> Callable[[Places, list[str], str], int]:
    def invoke(places: Places, argv: list[str], dest: str) -> int:
        base = ["--out", str(places.root / "run"), "--epochs", "1", "--max-steps", "1", "--batch-size", "32",
                "--device", "cpu", "--no-progress", "--sample-every", "1"]
        data = None if dest in ("data", "data_root") else worker.fake_data  # the real loader reads those
        return train.main([*base, *argv], defaults=defaults, command=worker.COMMAND, data=data,
                          networks=worker.tiny_networks)
    return invoke


def _sample(places: Places, argv: list[str], dest: str) -> int:
    first = [] if dest == "checkpoint" else [str(places.checkpoint)]
    return sample.main([*first, "--n", "4", "--out", str(places.root / "grid.png"), *argv])


def _evaluate(places: Places, argv: list[str], dest: str) -> int:
    first = [] if dest == "checkpoint" else [str(places.checkpoint)]
    return evaluate.main([*first, "--n", "16", "--batch-size", "16", *argv], out=io.StringIO())


COMMANDS = [
    Command("train", lambda: train.build_parser(train.REFERENCE), _train(train.REFERENCE)),
    Command("train", lambda: train.build_parser(train.CONDITIONAL), _train(train.CONDITIONAL)),
    Command("sample", sample.build_parser, _sample),
    Command("evaluate", evaluate.build_parser, _evaluate),
]
IDS = ["train", "train-conditional", "sample", "evaluate"]


def _actions(command: Command) -> list[argparse.Action]:
    return [a for a in command.parser()._actions if not isinstance(a, argparse._HelpAction)]


def _cases() -> list[tuple[Command, argparse.Action]]:
    return [(c, a) for c in COMMANDS for a in _actions(c)]


def _case_id(case: tuple[Command, argparse.Action]) -> str:
    command, action = case
    return f"{IDS[COMMANDS.index(command)]}:{action.option_strings[0] if action.option_strings else action.dest}"


CASES = _cases()


def _argv(action: argparse.Action, value: str) -> list[str]:
    """The option given ``value`` (``--opt=value``, so a value starting with '-' is not read as an option)."""
    return [f"{action.option_strings[0]}={value}"] if action.option_strings else ["--", value]


def _expect_one_error_line(command: Command, places: Places, argv: list[str], action: argparse.Action) -> str:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = command.invoke(places, argv, action.dest)
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    shown = f"{argv}: status {status}, stderr:\n{err.getvalue()[-2000:]}"
    assert status == common.EXIT_USAGE, shown
    assert len(lines) == 1 and lines[0].startswith("error: "), shown
    assert "Traceback" not in err.getvalue() and "usage:" not in err.getvalue(), shown
    names = list(action.option_strings) or [action.metavar or action.dest, *[a for a in argv if a != "--"]]
    assert any(str(name) in lines[0] for name in names), f"the line does not name {names}: {lines[0]}"
    return lines[0]


def _fixed_bad_values(command: Command, action: argparse.Action, places: Places) -> list[list[str]]:
    """Every bad command line known for ``action``: by its type, then by :data:`SEMANTIC`."""
    found: list[list[str]] = []
    if action.nargs == 0:  # a flag: it takes no value
        found.append([f"{action.option_strings[0]}=yes"])
    if action.choices is not None:
        found += [_argv(action, v) for v in ("bogus", "", "NONE")]
    if action.type in NUMBERS:
        found += [_argv(action, v) for v in NUMBERS[action.type][1]]
    if action.type in PATHS:
        found.append(_argv(action, ""))
    for entry in SEMANTIC.get((command.name, action.dest), []):
        if isinstance(entry, list):
            found.append(entry)
        else:
            kinds = ("missing", "folder", "text file", "under a file", "under a file (png)", "under /proc")
            found.append(_argv(action, _value(places, entry) if entry in kinds else entry))
    return found


# --------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_every_option_has_bad_values(case, places):
    command, action = case
    assert _fixed_bad_values(command, action, places), (
        f"no bad values known for {_case_id(case)} (type {getattr(action.type, '__name__', action.type)}): add "
        "its type to NUMBERS or its values to SEMANTIC in tests/test_cli_errors.py")


#: Known gaps, each failing for the reason given; strict, so a fixed one fails here until it is removed.
NOT_NAMED_YET: set[str] = set()
_GAP = pytest.mark.xfail(strict=True, reason="torchgan-lite-evaluate's line names the value but not the option "
                                              "(its owner: wrap the option's work in cli.common.about_option)")


@pytest.mark.parametrize("case", [pytest.param(c, marks=[_GAP] if _case_id(c) in NOT_NAMED_YET else [])
                                  for c in CASES], ids=[_case_id(c) for c in CASES])
def test_bad_values_end_in_one_error_line_naming_the_option(case, places):
    command, action = case
    for argv in _fixed_bad_values(command, action, places):
        _expect_one_error_line(command, places, argv, action)


NUMERIC = [c for c in CASES if c[1].type in NUMBERS]


def _not_valid(valid: Callable[[str], bool]) -> st.SearchStrategy[str]:
    text = st.one_of(st.text(max_size=16), st.integers(-2**80, 2**80).map(str),
                     st.floats(allow_nan=True, allow_infinity=True).map(repr))
    return text.filter(lambda s: not valid(s))


@pytest.mark.parametrize("case", NUMERIC, ids=[_case_id(c) for c in NUMERIC])
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_generated_bad_numbers_end_in_one_error_line(case, places, data):
    command, action = case
    value = data.draw(_not_valid(NUMBERS[action.type][0]), label="value")
    _expect_one_error_line(command, places, _argv(action, value), action)


def test_the_eight_tracebacks_of_issue_26_are_one_line_each(places):
    """The inputs an outside test found ending in a traceback (the evaluate one is in the cases above)."""
    by_dest = {(c.name, a.dest): (c, a) for c, a in CASES}
    for name, dest, value in [("train", "seed", "-1"), ("train", "seed", str(2**70)),
                              ("sample", "out", _value(places, "folder")),
                              ("sample", "out", _value(places, "under a file (png)")),
                              ("sample", "tensor", _value(places, "folder")),
                              ("sample", "tensor", _value(places, "under a file (png)")),
                              ("sample", "seed", "1180591620717411303424")]:
        command, action = by_dest[(name, dest)]
        _expect_one_error_line(command, places, [action.option_strings[0], value], action)


def test_sample_writes_its_tensor_atomically(places, monkeypatch):
    target = places.root / "samples.pt"
    target.write_bytes(b"the previous samples")

    def fails(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", fails)  # the write fails half way
    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        assert sample.main([str(places.checkpoint), "--tensor", str(target)]) == common.EXIT_USAGE
    assert "--tensor" in err.getvalue()
    assert target.read_bytes() == b"the previous samples"  # untouched
    assert sorted(p.name for p in places.root.iterdir() if p.name.startswith(".samples.pt")) == []


def test_debug_env_var_gives_the_traceback(places, monkeypatch):
    monkeypatch.setenv(common.DEBUG_ENV_VAR, "1")
    with pytest.raises(ValueError, match=r"notes\.txt"), redirect_stdout(io.StringIO()):
        sample.main([str(places.text_file)])  # not a checkpoint: the loader's own ValueError, raised


def test_error_line_folds_a_message_and_names_an_os_errors_file():
    assert common.error_line(ValueError("first\n  second\n")) == "first second"
    assert common.error_line(FileNotFoundError(2, "No such file or directory", "/x/y")) == \
        "/x/y: No such file or directory"
    assert common.error_line(RuntimeError()) == "RuntimeError"
