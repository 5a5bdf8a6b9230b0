"""Checkpoint files: bad files are refused clearly and change nothing; writes are atomic.

Every refusal is a ``ValueError`` (``FileNotFoundError`` for a missing file) whose
message names the file and what is wrong; after it, the trainer's weights,
optimizer buffers, progress and RNG are exactly as before, and the file on disk is
byte-for-byte unchanged.
"""

from __future__ import annotations

import io
import os
import pickle
import random
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from torchgan_lite import GANTrainer
from torchgan_lite.checkpoints import format as ckpt_mod
from torchgan_lite.checkpoints.format import FORMAT, latest_checkpoint, load_checkpoint, save_checkpoint
from torchgan_lite.losses import adversarial as losses
from torchgan_lite.nets import mlp as models

from .resume_child import build, single_thread, tiny_data


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_thread():
        yield


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A real checkpoint after 7 steps (mid-epoch) of the tiny trainer."""
    path = tmp_path_factory.mktemp("saved") / "good.pt"
    trainer, loader, _ = build("tiny", tiny_data())
    trainer.fit(loader, epochs=3, max_steps=7)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture
def trained() -> GANTrainer:
    """A different trainer (3 steps in), whose state a failed load must not touch."""
    trainer, loader, _ = build("tiny", tiny_data())
    trainer.fit(loader, epochs=3, max_steps=3)
    return trainer


def _everything(trainer: GANTrainer) -> dict[str, Any]:
    st = trainer.state
    saved = trainer.state_dict()  # the public view of the trainer's own state
    return {
        "g": [t.clone() for t in trainer.generator.state_dict().values()],
        "d": [t.clone() for t in trainer.discriminator.state_dict().values()],
        "opt": [t.clone() for o in (trainer.gan_step.g_optimizer, trainer.gan_step.d_optimizer)
                for s in o.state.values() for t in s.values()],
        "progress": (st.epoch, st.step, st.epoch_step, st.skipped_steps, [h.d_loss for h in st.history]),
        "sums": saved["trainer"]["epoch_sums"].clone(),
        "rng": torch.get_rng_state(),
        "extra": {k: v.clone() for k, v in saved["extra"]["weight_average"]["average"].items()},
    }


def _assert_unchanged(before: dict[str, Any], after: dict[str, Any]) -> None:
    for key in ("g", "d", "opt"):
        assert len(before[key]) == len(after[key]) and all(torch.equal(a, b) for a, b in zip(before[key],
                                                                                            after[key])), key
    assert before["progress"] == after["progress"]
    assert torch.equal(before["sums"], after["sums"]) and torch.equal(before["rng"], after["rng"])
    assert all(torch.equal(before["extra"][k], after["extra"][k]) for k in before["extra"])


class _Marker:
    """Unpickling this would run a shell command creating a file: proof that no code ran if it never appears."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def _bad_file(kind: str, folder: Path, good: Path) -> Path:
    path = folder / f"{kind}.pt"
    raw = good.read_bytes()
    if kind == "random_bytes":
        path.write_bytes(random.Random(0).randbytes(4096))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("epoch 3, step 7\n")
    elif kind.startswith("truncated"):
        path.write_bytes(raw[: int(len(raw) * float(kind.split("_")[1]))])
    elif kind == "no_format_key":
        torch.save({"generator": {}, "discriminator": {}}, path)
    elif kind == "other_format":
        torch.save({"format": "someone-else/3", "generator": {}}, path)
    elif kind == "a_tensor":
        torch.save(torch.zeros(3), path)
    elif kind == "plain_pickle":
        path.write_bytes(pickle.dumps({"format": FORMAT}, protocol=2))
    elif kind == "custom_class":
        torch.save({"format": FORMAT, "payload": _Marker(str(folder / "code_ran"))}, path)
    else:
        raise AssertionError(kind)
    return path


BAD_FILES = ["random_bytes", "empty", "text", "truncated_0.1", "truncated_0.5", "truncated_0.999",
             "no_format_key", "other_format", "a_tensor", "plain_pickle", "custom_class"]


@pytest.mark.parametrize("kind", BAD_FILES)
def test_foreign_or_damaged_file_is_refused_and_changes_nothing(kind, saved, trained, tmp_path):
    path = _bad_file(kind, tmp_path, saved)
    on_disk = path.read_bytes()
    before = _everything(trained)
    with pytest.raises(ValueError) as info:
        trained.load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message
    assert ("torchgan_lite checkpoint" in message or "corrupted" in message or "empty" in message
            or "refuses" in message), message
    _assert_unchanged(before, _everything(trained))
    assert path.read_bytes() == on_disk
    if kind == "custom_class":
        # torch's own reason, whole, and not its advice to load the file unsafely
        assert ("safe loading (weights_only=True) refuses: Trying to load unsupported GLOBAL posix.system whose "
                "module posix is blocked. It was not written by torchgan_lite, and no code from it was run") in message
        assert "weights_only` set to `False`" not in message
        assert not (tmp_path / "code_ran").exists()  # os.system never ran


def test_missing_file_and_folder(tmp_path, trained):
    with pytest.raises(FileNotFoundError, match=r"nope\.pt does not exist"):
        trained.load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(ValueError, match="is not a file"):
        trained.load_checkpoint(tmp_path)
    with pytest.raises(TypeError, match=r"path must be a str or os\.PathLike"):
        trained.load_checkpoint(3)  # type: ignore[arg-type]


def _other_trainer(**kw: Any) -> GANTrainer:
    args = {"latent": 16, "g_hidden": (64,), "d_hidden": (64,), "optimizer": None} | kw
    g = models.mlp_generator(latent_dim=args["latent"], hidden=args["g_hidden"], out_shape=(1, 8, 8))
    d = models.mlp_discriminator(in_shape=(1, 8, 8), hidden=args["d_hidden"], dropout=0.3)
    g_opt = torch.optim.SGD(g.parameters(), lr=0.1, momentum=0.9) if args["optimizer"] == "sgd" else None
    return GANTrainer(g, d, losses.NonSaturatingLoss(), g_optimizer=g_opt)


@pytest.mark.parametrize(("kw", "expected"), [
    ({"g_hidden": (32,)}, r"generator\.net\.0\.weight has shape \(64, 16\) in the checkpoint but \(32, 16\)"),
    ({"d_hidden": (48,)}, r"discriminator\.net\.0\.weight has shape \(64, 64\) in the checkpoint but \(48, 64\)"),
    ({"latent": 8}, r"generator\.net\.0\.weight has shape \(64, 16\) in the checkpoint but \(64, 8\)"),
    ({"g_hidden": (64, 64)}, r"the saved generator does not fit this generator: missing keys \['net\.4\.bias'"),
    ({"optimizer": "sgd"}, r"g_optimizer was a Adam when saved, this trainer's is a SGD"),
])
def test_models_that_do_not_fit_are_named(kw, expected, saved):
    trainer = _other_trainer(**kw)
    before = [p.clone() for p in trainer.generator.parameters()]
    with pytest.raises(ValueError, match=expected) as info:
        trainer.load_checkpoint(saved)
    assert str(saved) in str(info.value)
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.generator.parameters()))
    assert trainer.state.step == 0


def test_registered_state_missing_from_the_file_is_named(saved):
    trainer = _other_trainer()

    class Counter:
        def state_dict(self):
            return {"n": 1}

        def load_state_dict(self, state):
            raise AssertionError("must not be called")

    trainer.register_state("my_counter", Counter())
    with pytest.raises(ValueError, match=r"no saved state for registered \['my_counter'\]"):
        trainer.load_checkpoint(saved)


def _mutate(ckpt: dict[str, Any], how: str) -> None:
    tr = ckpt["trainer"]
    if how == "no_rng":
        del ckpt["rng"]
    elif how == "rng_numpy_keys":
        ckpt["rng"]["numpy"]["keys"] = torch.zeros(10, dtype=torch.int64)
    elif how == "rng_python_state":
        ckpt["rng"]["python"]["internal"] = [1, 2, 3]
    elif how == "rng_torch_dtype":
        ckpt["rng"]["torch"] = ckpt["rng"]["torch"].float()
    elif how == "no_latent_dim":
        del tr["latent_dim"]
    elif how == "step_not_int":
        tr["step"] = "seven"
    elif how == "epoch_step_past_step":
        tr["epoch_step"] = tr["step"] + 1
    elif how == "history_keys":
        tr["history"] = [{"epoch": 1}]
    elif how == "epoch_sums_shape":
        tr["epoch_sums"] = torch.zeros(3)
    elif how == "trainer_not_dict":
        ckpt["trainer"] = [1, 2]
    elif how == "optimizer_buffer_shape":
        ckpt["step"]["d_optimizer"]["state"][0]["exp_avg"] = torch.zeros(2, 2)
    elif how == "optimizer_unknown_param":
        ckpt["step"]["g_optimizer"]["state"][99] = {"step": torch.tensor(1.0)}
    elif how == "optimizer_groups":
        ckpt["step"]["g_optimizer"]["param_groups"][0]["params"] = [0, 1]
    elif how == "optimizer_not_dict":
        ckpt["step"]["g_optimizer"] = [1]
    elif how == "loader_not_dict":
        ckpt["loader"] = "position 2"
    elif how == "extra_not_dict":
        ckpt["extra"] = None
    elif how == "regularizers_count":
        ckpt["step"]["regularizers"] = [None, None, None]
    elif how == "generator_value":
        ckpt["generator"]["net.0.weight"] = 1.0
    else:
        raise AssertionError(how)


MUTATIONS = ["no_rng", "rng_numpy_keys", "rng_python_state", "rng_torch_dtype", "no_latent_dim", "step_not_int",
             "epoch_step_past_step", "history_keys", "epoch_sums_shape", "trainer_not_dict",
             "optimizer_buffer_shape", "optimizer_unknown_param", "optimizer_groups", "optimizer_not_dict",
             "loader_not_dict", "extra_not_dict", "regularizers_count", "generator_value"]


@pytest.mark.parametrize("how", MUTATIONS)
def test_malformed_entries_are_refused_before_anything_changes(how, saved, trained):
    ckpt = torch.load(saved, weights_only=True)
    _mutate(ckpt, how)
    before = _everything(trained)
    with pytest.raises(ValueError, match=r"^edited\.pt: ") as info:
        trained.load_state_dict(ckpt, source="edited.pt")
    assert len(str(info.value)) > len("edited.pt: ") + 10
    _assert_unchanged(before, _everything(trained))


def test_bit_flips_anywhere_are_detected_or_harmless(saved, tmp_path):
    """60 seeded single-bit flips: each is refused (ValueError), or it hit bytes that change nothing."""
    raw = saved.read_bytes()
    reference = load_checkpoint(saved)
    rng = random.Random(0)
    refused = 0
    for i in range(60):
        damaged = bytearray(raw)
        damaged[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        path = tmp_path / f"flip{i}.pt"
        path.write_bytes(bytes(damaged))
        try:
            got = load_checkpoint(path)
        except ValueError as err:
            assert str(path) in str(err)
            refused += 1
            continue
        _assert_same_content(reference, got)  # e.g. a flip in zip metadata that nothing reads
    assert refused >= 45  # nearly all bytes of the file are content


def _assert_same_content(a: Any, b: Any) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b)
        for k in a:
            _assert_same_content(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same_content(x, y)
    else:
        assert a == b or (a != a and b != b)


def test_edited_values_fail_their_checksums(saved, tmp_path):
    ckpt = torch.load(saved, weights_only=True)
    ckpt["trainer"]["step"] = 1000  # a plausible value: only the checksum can tell
    torch.save(ckpt, tmp_path / "steps.pt")
    with pytest.raises(ValueError, match=r"steps\.pt is corrupted: its non-tensor content"):
        load_checkpoint(tmp_path / "steps.pt")
    ckpt = torch.load(saved, weights_only=True)
    ckpt["discriminator"]["net.3.bias"] += 1e-6
    torch.save(ckpt, tmp_path / "weights.pt")
    with pytest.raises(ValueError, match=r"tensor checkpoint\['discriminator'\]\['net\.3\.bias'\] does not match"):
        load_checkpoint(tmp_path / "weights.pt")


def test_what_weights_only_cannot_load_is_refused_at_save(tmp_path):
    trainer, _, _ = build("tiny", tiny_data())

    class NumpyState:
        def state_dict(self):
            return {"buffer": np.zeros(3)}

        def load_state_dict(self, state):
            pass

    trainer.register_state("numpy_state", NumpyState())
    expected = r"\['extra'\]\['numpy_state'\]\['buffer'\] is a numpy\.ndarray.*torch\.from_numpy"
    with pytest.raises(TypeError, match=expected):
        trainer.save_checkpoint(tmp_path / "c.pt")
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary file


def test_numpy_scalars_are_stored_as_python_numbers(tmp_path):
    save_checkpoint({"metric": np.float32(0.5), "n": np.int64(3), "ok": np.bool_(True)}, tmp_path / "m.pt")
    got = load_checkpoint(tmp_path / "m.pt")
    assert (got["metric"], got["n"], got["ok"]) == (0.5, 3, True)
    assert (type(got["metric"]), type(got["n"]), type(got["ok"])) == (float, int, bool)


def test_a_failing_write_keeps_the_previous_file(tmp_path, monkeypatch, saved):
    path = tmp_path / "c.pt"
    path.write_bytes(saved.read_bytes())
    (tmp_path / "c.pt.1").write_bytes(b"older")
    real_save = torch.save

    def half_then_fail(obj, f, *a, **k):
        buf = io.BytesIO()
        real_save(obj, buf)
        f.write(buf.getvalue()[:1000])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(OSError) as info:
        save_checkpoint({"x": torch.ones(3)}, path, keep_last=2)
    assert info.value.errno == 28 and str(info.value) == (
        f"[Errno 28] cannot save the checkpoint {path}: no space left on device (ENOSPC); the file there (if any) "
        "is unchanged")
    monkeypatch.undo()
    assert path.read_bytes() == saved.read_bytes() and (tmp_path / "c.pt.1").read_bytes() == b"older"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt", "c.pt.1"]  # the temporary file is gone

    real_replace = os.replace

    def fail_final_rename(src, dst):
        if Path(dst) == path:
            raise OSError(5, "I/O error")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_final_rename)
    with pytest.raises(OSError, match=rf"cannot save the checkpoint {path}: input/output error \(EIO\)"):
        save_checkpoint({"x": torch.ones(3)}, path, keep_last=2)
    monkeypatch.undo()
    assert path.read_bytes() == saved.read_bytes()  # still the old one, and it still loads
    assert load_checkpoint(path)["trainer"]["step"] == 7
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_rotation_without_hard_links_copies(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    for i in range(4):
        save_checkpoint({"i": i}, tmp_path / "c.pt", keep_last=2)
    assert [load_checkpoint(tmp_path / n)["i"] for n in ("c.pt", "c.pt.1", "c.pt.2")] == [3, 2, 1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt", "c.pt.1", "c.pt.2"]


def test_temporaries_of_dead_writers_are_removed_and_others_kept(tmp_path):
    host = socket.gethostname()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".c.pt.{host}-{dead_pid}.abcd1234.tmp"
    alive = tmp_path / f".c.pt.{host}-{os.getpid()}.efgh5678.tmp"  # a concurrent writer in this process
    elsewhere = tmp_path / f".c.pt.other-host-{dead_pid}.ijkl9012.tmp"  # cannot be judged from here
    unrelated = tmp_path / ".d.pt.x-1.mnop3456.tmp"
    for p in (stale, alive, elsewhere, unrelated):
        p.write_bytes(b"partial")
    save_checkpoint({"x": 1}, tmp_path / "c.pt")
    assert not stale.exists()
    assert alive.exists() and elsewhere.exists() and unrelated.exists()


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"keep_last": -1}, ValueError, "keep_last must be None or an int >= 0, got -1"),
    ({"keep_last": True}, TypeError, "keep_last must be None or an int >= 0, got True"),
    ({"keep_last": "2"}, TypeError, "keep_last must be None or an int >= 0, got '2'"),
    ({"keep_last": 1.5}, TypeError, "keep_last must be None or an int >= 0, got 1.5"),
    ({"path": 5}, TypeError, "path must be a str or os.PathLike, got int"),
    ({"obj": [1]}, TypeError, "obj must be a dict, got list"),
])
def test_save_arguments_are_checked(kwargs, exc, match, tmp_path):
    args = {"obj": {"x": 1}, "path": tmp_path / "c.pt"} | kwargs
    with pytest.raises(exc, match=match):
        save_checkpoint(args["obj"], args["path"], keep_last=args.get("keep_last"))
    with pytest.raises(ValueError, match="is a folder"):
        save_checkpoint({"x": 1}, tmp_path)


def test_checksums_cover_sets_and_nested_containers(tmp_path):
    obj = {"s": {"b", "a", "c"}, "t": (1, 2.5, None), "nested": [{"k": torch.arange(4)}], "c": 1 + 2j}
    save_checkpoint(obj, tmp_path / "n.pt")
    got = load_checkpoint(tmp_path / "n.pt")
    assert got["s"] == {"a", "b", "c"} and got["t"] == (1, 2.5, None) and got["c"] == 1 + 2j
    assert torch.equal(got["nested"][0]["k"], torch.arange(4))
    assert ckpt_mod.FORMAT == got["format"]


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_files_follow_the_umask_like_other_outputs(umask, tmp_path):
    old = os.umask(umask)
    try:
        save_checkpoint({"x": 1}, tmp_path / "c.pt", keep_last=1)
        save_checkpoint({"x": 2}, tmp_path / "c.pt", keep_last=1)
        (tmp_path / "other.txt").write_text("x")  # any other new file
    finally:
        os.umask(old)
    expected = (tmp_path / "other.txt").stat().st_mode & 0o777
    assert expected == 0o666 & ~umask
    assert [(tmp_path / n).stat().st_mode & 0o777 for n in ("c.pt", "c.pt.1")] == [expected, expected]


def test_a_forbidden_folder_is_named_with_the_cause(tmp_path, monkeypatch):
    save_checkpoint({"x": 1}, tmp_path / "c.pt")
    real_open = os.open

    def forbidden(path, flags, *args, **kwargs):
        if str(path).endswith(".tmp"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", forbidden)
    with pytest.raises(PermissionError, match=rf"^\[Errno 13\] cannot save the checkpoint {tmp_path / 'c.pt'}: "
                                              r"permission denied \(EACCES\)"):
        save_checkpoint({"x": 2}, tmp_path / "c.pt")
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "c.pt")["x"] == 1


def test_latest_checkpoint_skips_damaged_copies_and_prefers_the_newest(tmp_path):
    for i in range(3):
        save_checkpoint({"i": i}, tmp_path / "c.pt", keep_last=2)
    assert latest_checkpoint(tmp_path / "c.pt") == tmp_path / "c.pt"
    (tmp_path / "c.pt").write_bytes((tmp_path / "c.pt").read_bytes()[:100])  # torn by hand
    assert latest_checkpoint(tmp_path / "c.pt") == tmp_path / "c.pt.1"
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    assert latest_checkpoint(tmp_path) == tmp_path / "c.pt.1"
    assert latest_checkpoint(tmp_path / "none.pt") is None and latest_checkpoint(tmp_path / "no" / "c.pt") is None
    with pytest.raises(TypeError, match=r"folder_or_path must be a str or os\.PathLike"):
        latest_checkpoint(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^map_location: device='meta': device type 'meta' is not supported"):
        latest_checkpoint(tmp_path, map_location="meta")  # refused, not every file skipped as damaged
