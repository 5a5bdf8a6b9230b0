"""Checkpoint files: bad files are refused clearly and change nothing; writes are atomic; kept copies by step.

Every refusal is a ``ValueError`` (``FileNotFoundError`` for a missing file) whose
message names the file and what is wrong; after it, the trainer's weights,
optimizer buffers, progress and RNG are exactly as before, and the file on disk is
byte-for-byte unchanged. Damage is found by the zip CRC-32s ``torch.save`` writes
(checked with ``zipfile``; ``torch.load`` checks none), NaN and infinity on loading as
on saving, and kept copies are step-numbered files found by their names.
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import random
import shutil
import socket
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace
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


def _storage_offset(raw: bytes, path: Path, record: str) -> int:
    """Where the bytes of the zip record whose name ends with ``record`` start in ``raw``."""
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.endswith(record))
    off = info.header_offset
    name_len, extra_len = int.from_bytes(raw[off + 26 : off + 28], "little"), int.from_bytes(raw[off + 28 : off + 30],
                                                                                              "little")
    return off + 30 + name_len + extra_len


def test_torch_load_alone_misses_a_corrupted_byte_that_the_zip_crc_catches(saved, tmp_path):
    raw = bytearray(saved.read_bytes())
    raw[_storage_offset(raw, saved, "/data/0") + 3] ^= 0x10  # one bit of the first tensor's storage
    path = tmp_path / "flipped.pt"
    path.write_bytes(bytes(raw))
    # torch.load checks no CRC: the damaged file loads, holding different numbers ...
    silently = torch.load(path, weights_only=True)
    assert not _same(silently, torch.load(saved, weights_only=True))
    # ... zipfile checks the CRC-32 torch.save stored for that record, and load_checkpoint refuses it.
    with pytest.raises(ValueError, match=r"flipped\.pt is corrupted: record '[^']*/data/0'.*fails its CRC-32"):
        load_checkpoint(path)
    raw = bytearray(saved.read_bytes())
    raw[_storage_offset(raw, saved, "data.pkl") + 40] ^= 0x01  # the pickled structure
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"record '[^']*data\.pkl', the pickled structure"):
        load_checkpoint(path)
    assert latest_checkpoint(path) is None


def test_a_record_flagged_as_a_folder_is_refused(saved, tmp_path):
    """Found by the byte-edit fuzz: with the folder bit of a storage's zip entry set, every CRC still matches,
    but torch's reader skips the entry and the tensor is uninitialised memory. torch.save writes no folders."""
    raw = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as z:
        name = next(i.filename for i in z.infolist() if i.filename.endswith("/data/0"))
    entry = raw.index(b"PK\x01\x02")  # the central directory: one header of 46 bytes + name + extra + comment each
    while raw[entry + 46 : entry + 46 + len(name)] != name.encode():
        lengths = [int.from_bytes(raw[entry + k : entry + k + 2], "little") for k in (28, 30, 32)]
        entry += 46 + sum(lengths)
    raw[entry + 38] |= 0x10  # the MS-DOS folder attribute of the central-directory entry of data/0
    path = tmp_path / "folder_flag.pt"
    path.write_bytes(bytes(raw))
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None  # the CRCs alone cannot tell
    with pytest.raises(ValueError, match=r"folder_flag\.pt is corrupted: record '[^']*/data/0' is flagged as a folder"):
        load_checkpoint(path)


def _same(a: Any, b: Any) -> bool:
    try:
        _assert_same_content(a, b)
    except AssertionError:
        return False
    return True


def test_zip_crcs_are_written_even_when_torch_is_told_not_to(tmp_path):
    before = torch.serialization.get_crc32_options()
    torch.serialization.set_crc32_options(False)
    try:
        save_checkpoint({"x": torch.arange(5.0)}, tmp_path / "ours.pt")
        torch.save({"format": FORMAT, "x": torch.arange(5.0)}, tmp_path / "theirs.pt")
        assert not torch.serialization.get_crc32_options()  # the setting is given back
    finally:
        torch.serialization.set_crc32_options(before)
    with zipfile.ZipFile(tmp_path / "ours.pt") as z:
        assert z.testzip() is None and all(i.CRC for i in z.infolist() if i.file_size)
    assert torch.equal(load_checkpoint(tmp_path / "ours.pt")["x"], torch.arange(5.0))
    with pytest.raises(ValueError, match=r"theirs\.pt was written without CRC-32s"):
        load_checkpoint(tmp_path / "theirs.pt")


def test_a_format_1_checkpoint_gets_one_clear_refusal(saved, trained, tmp_path):
    ckpt = torch.load(saved, weights_only=True)
    ckpt["format"] = "torchgan_lite.checkpoint/1"
    torch.save(ckpt, tmp_path / "old.pt")
    before = _everything(trained)
    with pytest.raises(ValueError, match=r"old\.pt is in format 'torchgan_lite\.checkpoint/1'.*no longer reads"):
        trained.load_checkpoint(tmp_path / "old.pt")
    _assert_unchanged(before, _everything(trained))


def _with_nan(saved: Path, folder: Path, where: str) -> Path:
    """A valid checkpoint, edited by hand with ``torch.load``/``torch.save`` (fresh zip CRCs) to hold one NaN."""
    ckpt = torch.load(saved, weights_only=True)
    if where == "weight":
        ckpt["generator"]["net.0.weight"][0, 0] = float("nan")
    elif where == "optimizer":
        ckpt["step"]["d_optimizer"]["state"][0]["exp_avg_sq"][0] = float("inf")
    elif where == "ema":
        next(iter(ckpt["extra"]["weight_average"]["average"].values())).view(-1)[0] = float("-inf")
    else:
        raise AssertionError(where)
    path = folder / f"nan_{where}.pt"
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize(("where", "named"), [
    ("weight", r"generator\['net\.0\.weight'\]"),
    ("optimizer", r"step\['d_optimizer'\]\['state'\]\[0\]\['exp_avg_sq'\]"),
    ("ema", r"extra\['weight_average'\]"),
])
def test_a_checkpoint_holding_nan_is_refused_on_loading_unless_allowed(where, named, saved, trained, tmp_path):
    path = _with_nan(saved, tmp_path, where)
    before = _everything(trained)
    with pytest.raises(ValueError, match=rf"nan_{where}\.pt holds a NaN or infinity in {named}.*allow_nonfinite"):
        trained.load_checkpoint(path)
    _assert_unchanged(before, _everything(trained))
    with pytest.raises(ValueError, match=named):
        load_checkpoint(path)
    assert latest_checkpoint(path) is None  # never offered for resuming
    with pytest.warns(RuntimeWarning, match=rf"nan_{where}\.pt holds a NaN or infinity in {named}"):
        trained.load_checkpoint(path, allow_nonfinite=True)
    assert trained.state.step == 7  # loaded
    if where == "weight":
        assert torch.isnan(trained.generator.state_dict()["net.0.weight"][0, 0])
    with pytest.raises(TypeError, match="allow_nonfinite"):
        load_checkpoint(path, allow_nonfinite="yes")  # type: ignore[arg-type]


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
    older = tmp_path / "c-000000003.pt"
    older.write_bytes(b"older")
    real_save = torch.save

    def half_then_fail(obj, f, *a, **k):
        buf = io.BytesIO()
        real_save(obj, buf)
        f.write(buf.getvalue()[:1000])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(OSError) as info:
        save_checkpoint({"x": torch.ones(3)}, path, keep_last=2, step=9)
    assert info.value.errno == errno.ENOSPC
    assert str(path) in str(info.value) and "no space left on device" in str(info.value)
    monkeypatch.undo()
    assert path.read_bytes() == saved.read_bytes() and older.read_bytes() == b"older"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c-000000003.pt", "c.pt"]  # the temporary file is gone

    real_replace = os.replace

    def fail_final_rename(src, dst):
        if Path(dst) == path:
            raise OSError(errno.EIO, "I/O error")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_final_rename)
    with pytest.raises(OSError, match=rf"cannot save the checkpoint {path}: input/output error \(EIO\)"):
        save_checkpoint({"x": torch.ones(3)}, path, keep_last=2, step=9)
    monkeypatch.undo()
    assert path.read_bytes() == saved.read_bytes()  # still the old one, and it still loads
    assert load_checkpoint(path)["trainer"]["step"] == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c-000000003.pt", "c.pt"]


class _SmallDisk:
    """A disk of ``capacity`` bytes holding the files of ``folder``: ``free()`` as ``shutil.disk_usage`` would
    report it, and a file wrapper whose ``write`` fills the disk up and then raises ``OSError(ENOSPC)``."""

    def __init__(self, folder: Path, capacity: int) -> None:
        self.folder, self.capacity = folder, capacity

    def used(self) -> int:
        return sum(p.stat().st_size for p in self.folder.iterdir() if p.is_file())

    def disk_usage(self, where: Any) -> Any:
        free = max(0, self.capacity - self.used())
        return SimpleNamespace(total=self.capacity, used=self.capacity - free, free=free)

    def wrap(self, f: Any) -> Any:
        disk = self

        class Full:
            def write(self, data: Any) -> int:
                view = memoryview(data).cast("B")
                f.flush()
                room = disk.capacity - disk.used()
                if len(view) > room:
                    f.write(view[: max(room, 0)])
                    f.flush()
                    raise OSError(errno.ENOSPC, "No space left on device")
                return f.write(view)

            def flush(self) -> None:
                f.flush()

        return Full()


def test_a_full_disk_reports_the_free_space_at_the_failure_not_after_the_cleanup(tmp_path, monkeypatch):
    """#26: the message measured free space after the partial file was deleted, when it is free again."""
    folder = tmp_path / "run"
    path = save_checkpoint({"w": torch.zeros(1000)}, folder / "c.pt")  # the previous checkpoint
    previous = path.read_bytes()
    disk = _SmallDisk(folder, capacity=len(previous) + 3 * 2**20)
    monkeypatch.setattr(shutil, "disk_usage", disk.disk_usage)
    real_save = torch.save
    # torch.save itself writes to a file whose write() raises ENOSPC once the disk is full; torch turns that
    # into "RuntimeError: ... unexpected pos", with the OSError as its context.
    monkeypatch.setattr(torch, "save", lambda obj, f, *a, **k: real_save(obj, disk.wrap(f), *a, **k))
    with pytest.raises(OSError) as info:
        save_checkpoint({"w": torch.zeros(2**20)}, path)  # 4 MiB: does not fit in the 3 MiB left
    message = str(info.value)
    assert info.value.errno == errno.ENOSPC and str(path) in message, message
    assert "3.0 MiB had been written when the write failed" in message, message
    assert "0.0 MiB free at the time of the failure" in message, message
    assert "(3.0 MiB free after removing the partial file)" in message, message
    assert path.read_bytes() == previous
    assert [p.name for p in folder.iterdir()] == ["c.pt"]  # no temporary left


def test_rotation_without_hard_links_copies(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    for i in range(4):
        save_checkpoint({"i": i}, tmp_path / "c.pt", keep_last=1, step=10 * i)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c-000000020.pt", "c-000000030.pt", "c.pt"]
    assert [load_checkpoint(tmp_path / n)["i"] for n in ("c.pt", "c-000000030.pt", "c-000000020.pt")] == [3, 3, 2]
    assert not os.path.samefile(tmp_path / "c.pt", tmp_path / "c-000000030.pt")  # a copy


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_kept_copies_are_named_by_step_and_pruned_to_keep_last(tmp_path):
    path = tmp_path / "checkpoint.pt"
    for step in (100, 200, 300, 400):
        save_checkpoint({"trainer": {"step": step}}, path, keep_last=2)  # the step comes from the trainer entry
    assert _names(tmp_path) == ["checkpoint-000000200.pt", "checkpoint-000000300.pt", "checkpoint-000000400.pt",
                                "checkpoint.pt"]
    assert os.path.samefile(path, tmp_path / "checkpoint-000000400.pt")  # the newest: one file, two names
    assert [load_checkpoint(tmp_path / f"checkpoint-000000{s}.pt")["trainer"]["step"] for s in (200, 300)] \
        == [200, 300]
    save_checkpoint({"trainer": {"step": 500}}, path, keep_last=0)  # 0/None: the numbered files are left alone
    assert len(_names(tmp_path)) == 4 and load_checkpoint(path)["trainer"]["step"] == 500
    save_checkpoint({"trainer": {"step": 600}}, path, keep_last=1)  # lowering keep_last prunes at once
    assert _names(tmp_path) == ["checkpoint-000000400.pt", "checkpoint-000000600.pt", "checkpoint.pt"]
    # Resumed from step 400 and saved again at 450: the files of the abandoned continuation go.
    save_checkpoint({"trainer": {"step": 450}}, path, keep_last=1)
    assert _names(tmp_path) == ["checkpoint-000000400.pt", "checkpoint-000000450.pt", "checkpoint.pt"]
    assert latest_checkpoint(tmp_path) == path
    save_checkpoint({"trainer": {"step": 450}, "again": True}, path, keep_last=1)  # the same step twice
    assert load_checkpoint(tmp_path / "checkpoint-000000450.pt")["again"] is True
    assert _names(tmp_path) == ["checkpoint-000000400.pt", "checkpoint-000000450.pt", "checkpoint.pt"]


@pytest.mark.parametrize(("obj", "step", "exc"), [
    ({"x": 1}, None, ValueError),  # no trainer step to number the copy with
    ({"x": 1}, -1, ValueError),
    ({"x": 1}, "3", TypeError),
    ({"x": 1}, True, TypeError),
    ({"trainer": {"step": 2.5}}, None, TypeError),
])
def test_keep_last_needs_a_step_to_name_the_copy(obj, step, exc, tmp_path):
    with pytest.raises(exc, match="step"):
        save_checkpoint(obj, tmp_path / "c.pt", keep_last=1, step=step)
    assert list(tmp_path.iterdir()) == []  # checked before anything is written
    save_checkpoint(obj, tmp_path / "c.pt", step=step if isinstance(step, int) else None)  # no keep_last: unused


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
    ({"path": 5}, TypeError, "path"),
    ({"path": " "}, ValueError, "path"),
    ({"obj": [1]}, TypeError, "obj must be a dict, got list"),
])
def test_save_arguments_are_checked(kwargs, exc, match, tmp_path):
    args = {"obj": {"x": 1}, "path": tmp_path / "c.pt"} | kwargs
    with pytest.raises(exc, match=match):
        save_checkpoint(args["obj"], args["path"], keep_last=args.get("keep_last"))
    with pytest.raises(ValueError, match="is a folder"):
        save_checkpoint({"x": 1}, tmp_path)


def test_sets_tuples_and_nested_containers_round_trip(tmp_path):
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
        save_checkpoint({"x": 1}, tmp_path / "c.pt", keep_last=1, step=1)
        save_checkpoint({"x": 2}, tmp_path / "c.pt", keep_last=1, step=2)
        (tmp_path / "other.txt").write_text("x")  # any other new file
    finally:
        os.umask(old)
    expected = (tmp_path / "other.txt").stat().st_mode & 0o777
    assert expected == 0o666 & ~umask
    assert [(tmp_path / n).stat().st_mode & 0o777 for n in ("c.pt", "c-000000001.pt")] == [expected, expected]


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


def _damage(path: Path) -> None:
    """Tear ``path`` in place (every name of the file sees it, as with damage on the disk)."""
    with open(path, "r+b") as f:
        f.truncate(100)


def test_latest_checkpoint_ranks_by_step_and_skips_damaged_files(tmp_path):
    for step in (1, 2, 3):
        save_checkpoint({"trainer": {"step": step}}, tmp_path / "c.pt", keep_last=2)
    assert latest_checkpoint(tmp_path / "c.pt") == tmp_path / "c.pt"
    assert latest_checkpoint(tmp_path) == tmp_path / "c.pt"
    os.utime(tmp_path / "c-000000001.pt", (4e9, 4e9))  # the oldest made the most recently modified: no matter
    _damage(tmp_path / "c.pt")  # also its twin c-000000003.pt
    assert latest_checkpoint(tmp_path / "c.pt") == tmp_path / "c-000000002.pt"
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    save_checkpoint({"trainer": {"step": 1}}, tmp_path / "best.pt")  # another file, an older step
    assert latest_checkpoint(tmp_path) == tmp_path / "c-000000002.pt"
    save_checkpoint({"trainer": {"step": 5}}, tmp_path / "other.pt")  # a file of a later step, whatever its name
    assert latest_checkpoint(tmp_path) == tmp_path / "other.pt"
    assert latest_checkpoint(tmp_path / "none.pt") is None and latest_checkpoint(tmp_path / "no" / "c.pt") is None
    with pytest.raises(TypeError, match="folder_or_path"):
        latest_checkpoint(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="map_location"):
        latest_checkpoint(tmp_path, map_location="meta")  # refused, not every file skipped as damaged


def test_latest_checkpoint_of_a_trainer_run_is_the_newest_step(tmp_path):
    trainer, loader, _ = build("tiny", tiny_data())
    for steps in (2, 4, 6):
        trainer.fit(loader, epochs=3, max_steps=steps)
        trainer.save_checkpoint(tmp_path / "checkpoint.pt", keep_last=1)
    assert _names(tmp_path) == ["checkpoint-000000004.pt", "checkpoint-000000006.pt", "checkpoint.pt"]
    _damage(tmp_path / "checkpoint.pt")
    found = latest_checkpoint(tmp_path)
    assert found == tmp_path / "checkpoint-000000004.pt"
    again, _, _ = build("tiny", tiny_data())
    again.load_checkpoint(found)
    assert again.state.step == 4
