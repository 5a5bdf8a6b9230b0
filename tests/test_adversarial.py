"""The reliability promises tested as an adversary would: kills at every point, damaged files, bad arguments.

- Rotation: a process saving with ``keep_last`` is SIGKILLed on entering each ``os`` call of
  a save (every one, found by counting first), with hard links and with the copy fallback.
  After every kill the *whole set* of names is checked: ``NAME`` and its step-numbered
  copies ``NAME-000000003`` ..., no stranger, each loading and holding the step its name
  says, each state one of those the save passes through, in order; the next save leaves
  the exact expected set and no temporary.
- Damaged and foreign files: a table of exact outcomes (the refusal and its reason), random
  byte edits with Hypothesis (refused, or equal content: never different content), and a
  pickle that calls ``os.system`` (refused with torch's reason; the command never runs).
- Arguments: every public constructor of the callbacks and reports, and the checkpoint
  functions, fuzzed with Hypothesis: a bad value gives ``TypeError``/``ValueError`` naming
  the argument at construction, never another exception; a good one is accepted.
"""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torchgan_lite.callbacks.checkpoint import ModelCheckpoint
from torchgan_lite.callbacks.progress import EpochLogger, ProgressBar
from torchgan_lite.callbacks.reporting import HistoryCSV, LossPlot, SampleGrid, fixed_noise, save_grid, write_json
from torchgan_lite.checkpoints.format import FORMAT, latest_checkpoint, load_checkpoint, save_checkpoint
from torchgan_lite.utils.runtime import resolve_device

from .crash_child import next_rotation, observed_rotation, rotation_states, save_step

CHILD = Path(__file__).resolve().parent / "crash_child.py"
FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

# --------------------------------------------------------------------------- kills at every point of a save

# (keep_last, no hard links, the save that is killed): the first save, the first rotation, a full rotation.
ROTATIONS = [(1, False, 1), (1, False, 3), (3, False, 2), (3, False, 5), (2, True, 4)]


def _run_child(root: Path, trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    spec, result = root / f"spec{len(list(root.iterdir()))}.json", root / "result.json"
    spec.write_text(json.dumps({"trials": trials, "timeout": 30}))
    proc = subprocess.run([sys.executable, str(CHILD), str(spec), str(result)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(result.read_text())


@pytest.fixture(scope="module")
def killed(tmp_path_factory) -> dict[tuple[int, bool, int], list[tuple[Path, dict[str, Any]]]]:
    """For each rotation: (folder, outcome) of a kill at every intercepted os call of the save."""
    root = tmp_path_factory.mktemp("rotation")
    counts = _run_child(root, [{"kind": "count", "saves": s, "keep_last": k, "no_links": nl,
                                "folder": str(root / f"count_{k}_{nl}_{s}")} for k, nl, s in ROTATIONS])
    trials, where = [], []
    for (k, nl, s), count in zip(ROTATIONS, counts):
        assert count["exit_code"] == 0
        calls = count["calls"][s - 1]
        assert "replace" in calls and "fsync" in calls  # the atomic write happened inside the counted save
        for at in range(1, len(calls) + 1):
            folder = root / f"kill_{k}_{nl}_{s}_{at}"
            trials.append({"kind": "kill_save", "saves": s, "keep_last": k, "no_links": nl, "at": at,
                           "folder": str(folder)})
            where.append((k, nl, s))
    outcomes = _run_child(root, trials)
    out: dict[tuple[int, bool, int], list[tuple[Path, dict[str, Any]]]] = {r: [] for r in ROTATIONS}
    for trial, key, outcome in zip(trials, where, outcomes):
        out[key].append((Path(trial["folder"]), outcome))
    return out


@pytest.mark.parametrize(("keep", "no_links", "save"), ROTATIONS,
                         ids=[f"keep{k}-{'copy' if nl else 'link'}-save{s}" for k, nl, s in ROTATIONS])
def test_a_kill_at_any_point_of_a_save_leaves_the_rotation_whole(killed, keep, no_links, save):
    states = rotation_states(save, keep)
    seen = []
    for folder, outcome in killed[(keep, no_links, save)]:
        assert outcome["killed_by_sigkill"], outcome
        now = observed_rotation(folder)  # no stranger, every name loads and holds the step it says
        assert now in states, f"{folder.name}: {now} is none of {states}"
        seen.append(states.index(now))
        newest = latest_checkpoint(folder / "ckpt.pt")
        assert newest == (folder / "ckpt.pt" if now else None)
        assert latest_checkpoint(folder) == newest
        save_step(folder, save + 1, keep)  # the next save heals whatever the kill left
        assert observed_rotation(folder) == next_rotation(now, save + 1, keep)
        assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
    assert seen == sorted(seen)  # the later the kill, the further the save got: never backwards
    assert set(seen) == set(range(len(states)))  # and every state of the save was hit by some kill


# --------------------------------------------------------------------------- damaged and foreign files


def _payload() -> dict[str, Any]:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    opt = torch.optim.Adam(net.parameters())
    net(torch.randn(4, 16)).sum().backward()
    opt.step()
    return {"model": net.state_dict(), "optimizer": opt.state_dict(), "progress": {"step": 7, "history": [0.5]}}


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("good") / "good.pt"
    save_checkpoint(_payload(), path)
    return path


class _System:
    """Unpickling this would run a shell command that creates a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _storage_offset(raw: bytes, good: Path) -> int:
    with zipfile.ZipFile(good) as z:
        info = next(i for i in z.infolist() if "/data/" in i.filename and not i.filename.endswith("data.pkl"))
    off = info.header_offset
    name_len, extra_len = int.from_bytes(raw[off + 26 : off + 28], "little"), int.from_bytes(raw[off + 28 : off + 30],
                                                                                              "little")
    return off + 30 + name_len + extra_len


def _make(kind: str, folder: Path, good: Path) -> Path:
    path = folder / f"{kind}.pt"
    raw = good.read_bytes()
    if kind.startswith("truncated"):
        path.write_bytes(raw[: int(len(raw) * float(kind.split("_")[1]))])
    elif kind == "zeroed":
        path.write_bytes(bytes(len(raw)))
    elif kind == "zeroed_weights":
        start = _storage_offset(raw, good)
        path.write_bytes(raw[:start] + bytes(64) + raw[start + 64 :])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "flipped_weight":
        start = _storage_offset(raw, good)
        path.write_bytes(raw[:start] + bytes([raw[start] ^ 0x04]) + raw[start + 1 :])
    elif kind == "nan_weight":
        ckpt = torch.load(good, weights_only=True)
        ckpt["model"]["0.weight"][3, 1] = float("nan")
        torch.save(ckpt, path)
    elif kind == "foreign_pickle":
        path.write_bytes(pickle.dumps({"format": FORMAT}, protocol=2))
    elif kind == "foreign_torch":
        torch.save({"format": "someone-else/3", "model": {}}, path)
    elif kind == "malicious":
        torch.save({"format": FORMAT, "payload": _System(folder / "code_ran")}, path)
    else:
        raise AssertionError(kind)
    return path


# kind -> the exact reason the refusal must give (after "checkpoint PATH")
CORRUPT = {
    "truncated_0.1": "truncated, corrupted, or not a torchgan_lite checkpoint (RuntimeError: PytorchStreamReader "
                     "failed reading zip archive: failed finding central directory",
    "truncated_0.5": "truncated, corrupted, or not a torchgan_lite checkpoint (OSError: [Errno 22] Invalid argument)",
    "truncated_0.999": "truncated, corrupted, or not a torchgan_lite checkpoint (OSError: [Errno 22] Invalid argument)",
    "zeroed": "truncated, corrupted, or not a torchgan_lite checkpoint (RuntimeError: Cannot use ``weights_only=True`` "
              "with files saved in the legacy .tar format.)",
    "zeroed_weights": "is corrupted: record 'archive/data/0', a tensor's storage, fails its CRC-32 check",
    "flipped_weight": "is corrupted: record 'archive/data/0', a tensor's storage, fails its CRC-32 check",
    "empty": "is empty (0 bytes): not a torchgan_lite checkpoint",
    "nan_weight": "holds a NaN or infinity in model['0.weight']",
    "foreign_pickle": "truncated, corrupted, or not a torchgan_lite checkpoint (RuntimeError: Invalid magic number",
    "foreign_torch": "is not a torchgan_lite checkpoint (format 'someone-else/3', expected",
    "malicious": "it holds Python objects that safe loading (weights_only=True) refuses: Trying to load unsupported "
                 "GLOBAL posix.system whose module posix is blocked. It was not written by torchgan_lite, and no "
                 "code from it was run",
}


@pytest.mark.parametrize("kind", sorted(CORRUPT))
def test_damaged_or_foreign_files_are_refused_with_their_reason(kind, good, tmp_path):
    path = _make(kind, tmp_path, good)
    on_disk = path.read_bytes()
    with pytest.raises(ValueError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"checkpoint {path} ")
    assert CORRUPT[kind] in message, message
    assert "set to `False`" not in message and "Re-running" not in message  # never the advice to load unsafely
    assert path.read_bytes() == on_disk
    assert latest_checkpoint(path) is None  # never offered as a checkpoint to resume from
    if kind == "malicious":
        assert not (tmp_path / "code_ran").exists()  # os.system never ran


def test_the_newest_good_copy_is_found_past_damaged_newer_ones(good, tmp_path):
    for step in range(1, 5):
        save_step(tmp_path, step, keep_last=3)
    (tmp_path / "ckpt.pt").unlink()
    (tmp_path / "ckpt.pt").write_bytes(b"torn")  # a new file: its numbered twin ckpt-000000004.pt is intact
    assert latest_checkpoint(tmp_path / "ckpt.pt") == tmp_path / "ckpt-000000004.pt"
    raw = bytearray((tmp_path / "ckpt-000000004.pt").read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # damaged in the weights' storage: only the zip CRC can tell
    (tmp_path / "ckpt-000000004.pt").write_bytes(bytes(raw))
    edited = torch.load(tmp_path / "ckpt-000000003.pt", weights_only=True)
    edited["weights"][0] = float("inf")
    torch.save(edited, tmp_path / "ckpt-000000003.pt")
    assert latest_checkpoint(tmp_path / "ckpt.pt") == tmp_path / "ckpt-000000002.pt"
    assert load_checkpoint(tmp_path / "ckpt-000000002.pt")["step"] == 2
    assert latest_checkpoint(tmp_path) == tmp_path / "ckpt-000000002.pt"
    assert latest_checkpoint(tmp_path / "missing" / "ckpt.pt") is None


@FUZZ
@given(edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=4))
def test_random_byte_edits_are_refused_or_change_nothing(edits, good, tmp_path_factory):
    raw = bytearray(good.read_bytes())
    for where, value in edits:
        raw[int(where * len(raw))] = value
    path = tmp_path_factory.mktemp("edit") / "edited.pt"
    path.write_bytes(bytes(raw))
    try:
        got = load_checkpoint(path)
    except ValueError as err:
        assert str(path) in str(err)
        return
    _assert_same(load_checkpoint(good), got)  # an edit that loads must be one that changed nothing


def _assert_same(a: Any, b: Any) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    else:
        assert type(a) is type(b) and (a == b or (a != a and b != b))


# --------------------------------------------------------------------------- arguments


class _Unknown:
    pass


BAD_POOL: list[Any] = [None, True, False, 0, -1, 1, 2, 3, 1.5, 2.0, math.nan, math.inf, "2", "", " ", "no", [], [2],
                       {}, (), b"x", _Unknown(), io.StringIO, int, torch.Tensor, ModelCheckpoint, torch.tensor(2),
                       2**70, "x.pt", Path("x.pt"), io.StringIO()]
VALUES = st.one_of(st.sampled_from(BAD_POOL), st.integers(-3, 3), st.floats(allow_nan=True))


def _is_int(v: object, minimum: int) -> bool:
    return type(v) is int and v >= minimum


def _inside(folder: Path, value: object) -> object:
    """A relative path value, moved inside ``folder`` so the fuzz never writes into the working directory."""
    if isinstance(value, (str, os.PathLike)) and str(value).strip() not in (".", "") \
            and not Path(value).is_absolute():
        return folder / value
    return value


def _is_path(v: object) -> bool:
    return isinstance(v, os.PathLike) or (isinstance(v, str) and bool(v.strip()))


def _is_stream(v: object) -> bool:
    return v is None or (not isinstance(v, type) and callable(getattr(v, "write", None)))


# (callable, valid defaults, {argument: validity})
CONSTRUCTORS: dict[str, tuple[Any, dict[str, Any], dict[str, Any]]] = {
    "ModelCheckpoint": (ModelCheckpoint, {"path": "c.pt"}, {
        "path": _is_path, "every": lambda v: _is_int(v, 1), "keep_last": lambda v: v is None or _is_int(v, 0),
        "on_interrupt": lambda v: type(v) is bool}),
    "ProgressBar": (ProgressBar, {}, {"refresh_every": lambda v: _is_int(v, 1), "file": _is_stream,
                                      "disable": lambda v: type(v) is bool}),
    "EpochLogger": (EpochLogger, {}, {"every": lambda v: _is_int(v, 1), "file": _is_stream}),
    "SampleGrid": (SampleGrid, {"out_dir": "grids", "z": torch.zeros(4, 3)}, {
        "out_dir": _is_path, "every": lambda v: _is_int(v, 1), "nrow": lambda v: _is_int(v, 1),
        "final": lambda v: type(v) is bool, "z": lambda v: False}),
    "HistoryCSV": (HistoryCSV, {"path": "h.csv"}, {"path": _is_path}),
    "LossPlot": (LossPlot, {"path": "l.png"}, {"path": _is_path, "every": lambda v: _is_int(v, 1),
                                               "file": _is_stream}),
    "fixed_noise": (fixed_noise, {"n": 2, "latent_dim": 3}, {"seed": lambda v: _is_int(v, 0) and v < 2**64}),
}
ARGUMENTS = [(name, arg) for name, (_, _, checks) in CONSTRUCTORS.items() for arg in checks]


@pytest.mark.parametrize(("name", "arg"), ARGUMENTS, ids=[f"{n}-{a}" for n, a in ARGUMENTS])
@FUZZ
@given(value=VALUES)
def test_every_constructor_argument_is_checked_at_construction(name, arg, value, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make, defaults, checks = CONSTRUCTORS[name]
    valid = checks[arg](value)
    try:
        make(**(defaults | {arg: value}))
    except (TypeError, ValueError) as err:
        assert not valid, f"{name}({arg}={value!r}) refused a valid value: {err}"
        assert arg in str(err), f"{name}({arg}={value!r}): the message does not name {arg}: {err}"
        return
    assert valid, f"{name}({arg}={value!r}) accepted a bad value"


def _is_map_location(v: object) -> bool:
    if isinstance(v, (str, torch.device)):  # a device that is here
        return str(v).split(":")[0] in ("cpu", "auto") or (str(v).startswith("cuda") and torch.cuda.is_available())
    return v is None or isinstance(v, dict) or (callable(v) and not isinstance(v, type))


@FUZZ
@given(value=st.one_of(VALUES, st.sampled_from(["cpu", "meta", "cuda:x", "cpu:0", {"cpu": "cpu"}, torch.device("cpu"),
                                               lambda storage, location: storage])))
def test_checkpoint_functions_check_their_arguments(value, good, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    calls = {
        # A relative path is written inside the test's folder, never into the working directory.
        "path": (lambda: save_checkpoint({"x": 1}, _inside(folder, value)),
                 _is_path(value) and str(value).strip() not in (".", "")),
        "obj": (lambda: save_checkpoint(value, folder / "c.pt"), isinstance(value, dict)),
        "map_location": (lambda: load_checkpoint(good, map_location=value), _is_map_location(value)),
        "folder_or_path": (lambda: latest_checkpoint(value), _is_path(value)),
    }
    for arg, (call, valid) in calls.items():
        try:
            call()
        except (TypeError, ValueError) as err:
            assert not valid, f"{arg}={value!r} refused a valid value: {err}"
            assert arg in str(err) or (arg == "path" and "is a folder" in str(err)), f"{arg}={value!r}: {err}"
            continue
        assert valid, f"{arg}={value!r} accepted a bad value"


@pytest.mark.parametrize("value", [*BAD_POOL[:-3], math.nan, 3.0, "3"], ids=repr)
def test_save_checkpoint_keep_last_is_checked_before_anything_is_written(value, tmp_path):
    valid = value is None or _is_int(value, 0)
    if valid:
        save_checkpoint({"x": 1}, tmp_path / "c.pt", keep_last=value, step=0)
        assert load_checkpoint(tmp_path / "c.pt")["x"] == 1
        return
    with pytest.raises((TypeError, ValueError), match="keep_last must be None or an int >= 0"):
        save_checkpoint({"x": 1}, tmp_path / "c.pt", keep_last=value, step=0)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("keep_last", "exc"), [(-1, ValueError), ("2", TypeError), (1.5, TypeError),
                                                (math.nan, TypeError), ([], TypeError), (True, TypeError)])
def test_model_checkpoint_refuses_keep_last_at_construction(keep_last, exc):
    with pytest.raises(exc, match=r"^keep_last must be None or an int >= 0, got "):
        ModelCheckpoint("c.pt", keep_last=keep_last)


@pytest.mark.parametrize(("make", "arg"), [
    (lambda: ModelCheckpoint("c.pt", on_interrupt="no"), "on_interrupt"),
    (lambda: ProgressBar(disable="yes"), "disable"),
    (lambda: SampleGrid("g", torch.zeros(2, 3), final=0), "final"),
    (lambda: EpochLogger(file=io.StringIO), "file"),
    (lambda: ProgressBar(file=sys.stdout.write), "file"),
    (lambda: SampleGrid("g", torch.Tensor), "z"),
])
def test_flags_are_real_bools_and_classes_are_named(make, arg):
    with pytest.raises(TypeError) as info:
        make()
    assert str(info.value).startswith(f"{arg} must be")
    if arg == "z" or "StringIO" in str(info.value):
        assert "the class" in str(info.value) and "an instance was expected" in str(info.value)


@pytest.mark.parametrize("device", ["mps", "xpu", "xpu:0", "meta", "hpu", "tpu", "cuda:99", "", 0, None, torch.device])
def test_unsupported_devices_are_a_clear_error(device):
    available = {"mps": torch.backends.mps.is_available(), "xpu": hasattr(torch, "xpu") and torch.xpu.is_available()}
    if isinstance(device, str) and available.get(device.split(":")[0]):
        pytest.skip(f"{device} is available here")  # pragma: no cover - not on the CPU runners
    with pytest.raises((ValueError, TypeError)) as info:
        resolve_device(device)
    assert "device" in str(info.value)
    if device in ("mps", "xpu"):
        assert isinstance(info.value, ValueError) and f"torch has no {device} device available here" in str(info.value)


def test_report_writers_check_their_inputs(tmp_path):
    with pytest.raises(TypeError, match=r"^images must be a torch\.Tensor"):
        save_grid([[0.0]], tmp_path / "g.png")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^nrow must be an int, got '8'"):
        save_grid(torch.zeros(2, 1, 4, 4), tmp_path / "g.png", nrow="8")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^path must be a str or os\.PathLike"):
        write_json(3, {})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^dtype must be a floating torch\.dtype"):
        fixed_noise(2, 3, dtype=torch.int64)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- the one atomic writer


def _writers(tmp_path: Path) -> dict[str, Any]:
    from torchgan_lite.callbacks.reporting import plot_losses, write_history_csv

    history = [{"epoch": 1, "step": 4, "d_loss": 1.0, "g_loss": 2.0, "d_real": 0.1, "d_fake": -0.1, "seconds": 1.0,
                "steps_per_s": 4.0}]
    return {
        "grid.png": lambda p: save_grid(torch.rand(4, 1, 8, 8), p, nrow=2),
        "history.csv": lambda p: write_history_csv(history, p),
        "losses.png": lambda p: plot_losses(history, p),
        "run.json": lambda p: write_json(p, {"status": "running"}),
        "ckpt.pt": lambda p: save_checkpoint({"step": 1}, p),
    }


@pytest.mark.parametrize("name", ["grid.png", "history.csv", "losses.png", "run.json", "ckpt.pt"])
def test_every_writer_is_atomic_follows_the_umask_and_names_a_full_disk(name, tmp_path, monkeypatch):
    if name == "losses.png":
        pytest.importorskip("matplotlib")  # the [plot] extra
    write = _writers(tmp_path)[name]
    path = tmp_path / name
    old = os.umask(0o027)
    try:
        write(path)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640  # the umask's, not mkstemp's 0600
    before = path.read_bytes()
    real_fsync = os.fsync

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)  # the data cannot be made durable: the disk is full
    with pytest.raises(OSError) as info:
        write(path)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert info.value.errno == 28
    assert f"{path}: no space left on device (ENOSPC); the file there (if any) is unchanged" in str(info.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary left behind
