"""Checkpoint files: atomic writes, rotation, safe loading, and every RNG state.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it
loads with ``torch.load(weights_only=True)``: no code from the file is ever run.
What would not load that way (a NumPy array, a custom object in a callback's
state) is refused when *saving*, naming the entry, rather than discovered when
the run needs resuming; NumPy scalars (a metric computed with NumPy) are stored
as Python numbers.

Writing is atomic: the dict goes to a temporary file in the same folder, which is
flushed and fsync'ed, then renamed over the target with ``os.replace`` (atomic on
POSIX and Windows), and the folder is fsync'ed. A process killed at any moment
leaves either the old file or the new one, never a torn one; with ``keep_last=K``
the previous K files are kept as ``NAME.1`` (newest) ... ``NAME.K``, and ``NAME``
itself never disappears once written. Every file carries CRC-32 checksums of each
tensor and of the rest of its content, checked on loading: a flipped bit in the
weights is an error, not a silently different model. Temporary files left behind by a killed
writer (``.NAME.HOST-PID.XXXX.tmp``) are removed by the next save on that host.

Loading checks everything before it changes anything: a truncated, corrupted or
foreign file, or one whose shapes or settings do not fit the trainer, raises
``ValueError`` naming the file and the mismatch, and the trainer is left as it was.
See ``docs/reliability.md`` for the guarantees and the tests that show them.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import socket
import tempfile
import zlib
from collections import Counter, OrderedDict
from collections.abc import Iterator
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from .trainer import GANTrainer

__all__ = [
    "FORMAT",
    "capture_rng_state",
    "check_module_state",
    "check_rng_state",
    "load_checkpoint",
    "load_trainer_state",
    "restore_rng_state",
    "sanitize_for_save",
    "save_checkpoint",
    "trainer_state_dict",
    "verify_checksums",
]

FORMAT = "torchgan_lite.checkpoint/1"

# Types that torch.load(weights_only=True) rebuilds by default (torch/_weights_only_unpickler.py).
_PLAIN = (str, bytes, bytearray, int, float, bool, complex, type(None), torch.dtype, torch.device, torch.Size)
# Optimizer buffers that have the shape of their parameter (torch.optim's Adam, AdamW, SGD, RMSprop, ...).
_PARAM_SHAPED = frozenset({"exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer", "square_avg",
                           "acc_delta", "sum", "grad_avg", "ax", "exp_inf", "prev", "step_size"})
_MT_WORDS = 624  # the Mersenne Twister state size of NumPy's legacy RNG and of Python's random
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


# --------------------------------------------------------------------------- RNG states


def capture_rng_state() -> dict[str, Any]:
    """torch (CPU and every CUDA device), NumPy and Python ``random`` states, weights_only-safe."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # type: ignore[misc]
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": py_version, "internal": list(py_internal), "gauss_next": py_gauss},
    }


def check_rng_state(state: object, source: str = "rng state") -> None:
    """Raise ``ValueError`` naming ``source`` unless ``state`` is what :func:`capture_rng_state` returns."""

    def bad(what: str) -> ValueError:
        return ValueError(f"{source}: the saved RNG state is malformed: {what}")

    if not isinstance(state, dict):
        raise bad(f"expected a dict, got {type(state).__name__}")
    t = state.get("torch")
    if not isinstance(t, torch.Tensor) or t.dtype != torch.uint8 or t.dim() != 1:
        raise bad("'torch' must be a 1-d uint8 tensor (torch.get_rng_state())")
    cuda = state.get("cuda", [])
    if not isinstance(cuda, (list, tuple)) or not all(isinstance(c, torch.Tensor) and c.dtype == torch.uint8
                                                       for c in cuda):
        raise bad("'cuda' must be a list of uint8 tensors")
    n = state.get("numpy")
    if not isinstance(n, dict) or set(n) != {"kind", "keys", "pos", "has_gauss", "cached_gaussian"}:
        raise bad("'numpy' must hold kind, keys, pos, has_gauss, cached_gaussian")
    if n["kind"] != "MT19937" or not isinstance(n["keys"], torch.Tensor) or tuple(n["keys"].shape) != (_MT_WORDS,):
        raise bad(f"'numpy' must be an MT19937 state with {_MT_WORDS} keys")
    if not (isinstance(n["pos"], int) and 0 <= n["pos"] <= _MT_WORDS):
        raise bad(f"numpy pos must be an int in [0, {_MT_WORDS}], got {n['pos']!r}")
    p = state.get("python")
    if not isinstance(p, dict) or set(p) != {"version", "internal", "gauss_next"}:
        raise bad("'python' must hold version, internal, gauss_next")
    internal = p["internal"]
    if (not isinstance(internal, (list, tuple)) or len(internal) != _MT_WORDS + 1
            or not all(type(v) is int for v in internal)):
        raise bad(f"python internal state must be {_MT_WORDS + 1} ints")
    if not (p["gauss_next"] is None or isinstance(p["gauss_next"], float)):
        raise bad("python gauss_next must be None or a float")


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state` (check it first with :func:`check_rng_state`)."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        cuda_states = state["cuda"][: torch.cuda.device_count()]
        for i, s in enumerate(cuda_states):
            torch.cuda.set_rng_state(s, i)
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))


# --------------------------------------------------------------------------- writing


def sanitize_for_save(obj: Any, where: str = "checkpoint") -> Any:
    """Return ``obj`` with NumPy scalars turned into Python numbers; refuse what weights_only cannot load.

    Args:
        obj: Nested dicts, lists, tuples, sets, tensors and plain values.
        where: The name of ``obj``, used in error messages (``checkpoint['extra']['ema']``...).

    Raises:
        TypeError: an entry that ``torch.load(weights_only=True)`` would refuse (a NumPy
            array, a tensor subclass, any other object); the message names the entry.
    """
    if type(obj) in _PLAIN:
        return obj
    if type(obj) in (torch.Tensor, nn.Parameter):
        return obj
    if isinstance(obj, np.generic) and isinstance(obj, (np.number, np.bool_)):
        return obj.item()  # e.g. a metric computed with NumPy: np.float64 would not load
    if type(obj) in (dict, OrderedDict, Counter):
        out = type(obj)() if type(obj) is not Counter else Counter()
        for key, value in obj.items():
            key = sanitize_for_save(key, f"{where} key")
            out[key] = sanitize_for_save(value, f"{where}[{key!r}]")
        return out
    if type(obj) in (list, tuple, set):
        items = [sanitize_for_save(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return type(obj)(items)
    hint = " (convert it with torch.from_numpy)" if isinstance(obj, np.ndarray) else ""
    raise TypeError(f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}, which "
                    f"torch.load(weights_only=True) cannot load{hint}; a checkpoint may hold only tensors, "
                    "numbers, strings, None, and lists/tuples/dicts/sets of them")


def _walk(obj: Any, where: str) -> Iterator[tuple[str, Any]]:
    """``(where, leaf)`` for every leaf of a sanitized payload, in a fixed order (sets sorted by repr)."""
    if isinstance(obj, dict):
        yield where, f"{type(obj).__name__}:{len(obj)}"
        for key, value in obj.items():
            yield from _walk(value, f"{where}[{key!r}]")
    elif isinstance(obj, (list, tuple)):
        yield where, f"{type(obj).__name__}:{len(obj)}"
        for i, value in enumerate(obj):
            yield from _walk(value, f"{where}[{i}]")
    elif isinstance(obj, set):
        yield where, f"set:{sorted(repr(v) for v in obj)}"
    else:
        yield where, obj


def _tensor_crc(t: torch.Tensor) -> int:
    if t.layout != torch.strided:
        t = t.to_dense()
    flat = t.detach().cpu().contiguous().reshape(-1)
    header = f"{t.dtype}{tuple(t.shape)}".encode()
    return zlib.crc32(flat.view(torch.uint8).numpy(), zlib.crc32(header)) if flat.numel() else zlib.crc32(header)


def _checksums(payload: dict[str, Any]) -> dict[str, Any]:
    """CRC-32 of every tensor (by its place in the payload) and of all the other content together."""
    tensors: dict[str, int] = {}
    rest = 0
    for where, leaf in _walk({k: v for k, v in payload.items() if k != "checksums"}, "checkpoint"):
        if isinstance(leaf, torch.Tensor):
            tensors[where] = _tensor_crc(leaf)
            leaf = "tensor"
        rest = zlib.crc32(f"{where}={type(leaf).__name__}:{leaf!r};".encode(), rest)
    return {"tensors": tensors, "rest": rest}


def verify_checksums(ckpt: dict[str, Any], source: str) -> None:
    """Raise ``ValueError`` naming ``source`` and the damaged entry if ``ckpt`` fails its stored checksums.

    Files without a ``checksums`` entry (none are written so) pass unchecked.
    """
    saved = ckpt.get("checksums")
    if saved is None:
        return
    if not isinstance(saved, dict) or not isinstance(saved.get("tensors"), dict) or type(saved.get("rest")) is not int:
        raise ValueError(f"checkpoint {source} is corrupted: its checksum entry is malformed")
    now = _checksums(ckpt)
    for where, crc in now["tensors"].items():
        if saved["tensors"].get(where) != crc:
            raise ValueError(f"checkpoint {source} is corrupted: tensor {where} does not match its checksum "
                             "(the file was damaged after it was written)")
    if set(saved["tensors"]) != set(now["tensors"]) or saved["rest"] != now["rest"]:
        raise ValueError(f"checkpoint {source} is corrupted: its non-tensor content (progress, history, settings) "
                         "does not match its checksum (the file was damaged after it was written)")


def save_checkpoint(obj: dict[str, Any], path: str | os.PathLike[str], keep_last: int | None = None) -> Path:
    """Write ``obj`` to ``path`` atomically; optionally keep ``keep_last`` older copies.

    Args:
        obj: A dict of tensors and plain Python values (checked with :func:`sanitize_for_save`
            before anything is written).
        path: Target file; its folder is created.
        keep_last: None or 0: only ``path``. K: also ``path.1`` ... ``path.K``, newest first.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        TypeError: ``obj`` holds something ``torch.load(weights_only=True)`` could not
            load; nothing is written.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    if keep_last is not None and (isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 0):
        raise ValueError(f"keep_last must be None or an int >= 0, got {keep_last!r}")
    if not isinstance(obj, dict):
        raise TypeError(f"obj must be a dict, got {type(obj).__name__}")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path {path} is a folder; give the checkpoint file's path")
    payload = sanitize_for_save({"format": FORMAT, **obj})
    payload["checksums"] = _checksums(payload)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f"{_temp_prefix(path)}{socket.gethostname()}-{os.getpid()}.",
                                    suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        if keep_last and path.exists():
            for i in range(keep_last - 1, 0, -1):  # NAME.(K-1) -> NAME.K ... NAME.1 -> NAME.2
                older = path.with_name(f"{path.name}.{i}")
                if older.exists():
                    os.replace(older, path.with_name(f"{path.name}.{i + 1}"))
            # The current file becomes NAME.1 through a hard link, so NAME itself never vanishes.
            staged = path.with_name(f".{path.name}.1.tmp")
            with _suppress_oserror():
                os.unlink(staged)  # left over by a crash
            try:
                os.link(path, staged)
            except OSError:  # a filesystem without hard links: a durable copy instead
                shutil.copyfile(path, staged)
                _fsync_file(staged)
            os.replace(staged, path.with_name(f"{path.name}.1"))
        os.replace(tmp_name, path)
    except BaseException:
        with _suppress_oserror():
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)
    return path


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def _remove_stale_temporaries(path: Path) -> None:
    """Delete temporaries of ``path`` left by writers on this host that no longer run (killed mid-save)."""
    prefix, host = _temp_prefix(path), socket.gethostname()
    try:
        candidates = [p for p in path.parent.iterdir() if p.name.startswith(prefix) and p.name.endswith(".tmp")]
    except OSError:
        return
    for p in candidates:
        middle = p.name[len(prefix) : -len(".tmp")]  # HOST-PID.RANDOM
        owner, _, _ = middle.rpartition(".")
        owner_host, _, pid = owner.rpartition("-")
        if owner_host != host or not pid.isdigit() or _pid_alive(int(pid)):
            continue
        with _suppress_oserror():
            os.unlink(p)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists (another user's); anything else: assume alive
        return True
    return True


class _suppress_oserror:
    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: object, tb: object) -> bool:
        return isinstance(exc, OSError)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    # Make the rename itself durable (POSIX); not possible or needed on Windows.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- reading


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)`` and check its format.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a folder, an empty, truncated, corrupted or foreign file, one holding
            Python objects that weights_only loading refuses, or one whose content fails its
            checksums (the message names the file, and the damaged tensor when it is one).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise ValueError(f"checkpoint {path} is not a file")
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"checkpoint {path} is empty (0 bytes): not a torchgan_lite checkpoint")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise ValueError(f"checkpoint {path} ({size} bytes) cannot be read: {_describe_load_error(err)}") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"checkpoint {path} is not a torchgan_lite checkpoint (format {found!r}, "
                         f"expected {FORMAT!r})")
    verify_checksums(ckpt, str(path))
    return ckpt


def _describe_load_error(err: Exception) -> str:
    text = " ".join(_ANSI.sub("", str(err)).split())  # one line, no terminal colour codes
    if "WeightsUnpickler error:" in text:
        reason = text.split("WeightsUnpickler error:", 1)[1].split(" Check the documentation")[0]
        reason = reason.split(". Please use")[0].strip()
        if "Unsupported global" in reason:
            return (f"it holds Python objects that safe loading (weights_only=True) refuses ({reason}); "
                    "it was not written by torchgan_lite, and no code from it was run")
        return f"its pickled content is corrupted ({reason})"
    return f"truncated, corrupted, or not a torchgan_lite checkpoint ({type(err).__name__}: {text[:300]})"


def check_module_state(source: str, name: str, module: nn.Module, saved: object) -> None:
    """Raise ``ValueError`` naming ``source`` and the first mismatch if ``saved`` cannot load into ``module``."""
    if not isinstance(saved, dict):
        raise ValueError(f"{source}: '{name}' entry is {type(saved).__name__}, expected a state dict")
    own = module.state_dict()
    missing = sorted(set(own) - set(saved))
    unexpected = sorted(set(saved) - set(own))
    if missing or unexpected:
        raise ValueError(f"{source}: the saved {name} does not fit this {name}: missing keys {missing[:5]}, "
                         f"unexpected keys {unexpected[:5]}")
    for key, tensor in own.items():
        other = saved[key]
        if not isinstance(other, torch.Tensor) or other.shape != tensor.shape:
            shape = tuple(other.shape) if isinstance(other, torch.Tensor) else type(other).__name__
            raise ValueError(f"{source}: {name}.{key} has shape {shape} in the checkpoint but "
                             f"{tuple(tensor.shape)} in this {name}")


def _check_optimizer_state(source: str, name: str, opt: torch.optim.Optimizer, saved: object,
                           saved_type: object) -> None:
    if saved_type is not None and saved_type != type(opt).__name__:
        raise ValueError(f"{source}: {name} was a {saved_type} when saved, this trainer's is a "
                         f"{type(opt).__name__}")
    if not isinstance(saved, dict) or not isinstance(saved.get("state"), dict) \
            or not isinstance(saved.get("param_groups"), list) \
            or not all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in saved["param_groups"]):
        raise ValueError(f"{source}: '{name}' entry is not an optimizer state dict (state, param_groups)")
    saved_sizes = [len(g["params"]) for g in saved["param_groups"]]
    own_sizes = [len(g["params"]) for g in opt.param_groups]
    if saved_sizes != own_sizes:
        raise ValueError(f"{source}: {name} state has parameter groups of sizes {saved_sizes}, "
                         f"this trainer's has {own_sizes}")
    # torch.optim maps saved ids to this optimizer's parameters in order; check the buffers fit them.
    own_params = [p for g in opt.param_groups for p in g["params"]]
    index = {pid: own_params[i] for i, pid in enumerate(p for g in saved["param_groups"] for p in g["params"])}
    for pid, entry in saved["state"].items():
        if pid not in index or not isinstance(entry, dict):
            raise ValueError(f"{source}: {name} state has an entry for parameter {pid!r}, which is not in its "
                             "param_groups")
        for key, value in entry.items():
            if key in _PARAM_SHAPED and isinstance(value, torch.Tensor) and value.shape != index[pid].shape:
                raise ValueError(f"{source}: {name} state[{pid}][{key!r}] has shape {tuple(value.shape)} but its "
                                 f"parameter has shape {tuple(index[pid].shape)}")


_TRAINER_INTS = ("epoch", "step", "epoch_step", "latent_dim")


def _check_trainer_entry(source: str, tr: object) -> list[Any]:
    """Check the ``trainer`` entry; returns the rebuilt ``EpochStats`` history."""
    from .state import EpochStats

    if not isinstance(tr, dict):
        raise ValueError(f"{source}: 'trainer' entry is {type(tr).__name__}, expected a dict")
    for key in (*_TRAINER_INTS, "history", "epoch_sums", "sample_shape"):
        if key not in tr:
            raise ValueError(f"{source}: 'trainer' entry has no {key!r}")
    for key in _TRAINER_INTS:
        if type(tr[key]) is not int or tr[key] < 0:
            raise ValueError(f"{source}: trainer {key} must be an int >= 0, got {tr[key]!r}")
    if tr["epoch_step"] > tr["step"]:
        raise ValueError(f"{source}: trainer epoch_step {tr['epoch_step']} exceeds step {tr['step']}")
    sums = tr["epoch_sums"]
    if not isinstance(sums, torch.Tensor) or tuple(sums.shape) != (5,) or not sums.is_floating_point():
        raise ValueError(f"{source}: trainer epoch_sums must be a float tensor of shape (5,)")
    history = tr["history"]
    if not isinstance(history, list):
        raise ValueError(f"{source}: trainer history must be a list, got {type(history).__name__}")
    names = {f.name for f in fields(EpochStats)}
    rebuilt = []
    for i, h in enumerate(history):
        if not isinstance(h, dict) or set(h) != names:
            raise ValueError(f"{source}: trainer history[{i}] must be a dict with keys {sorted(names)}")
        rebuilt.append(EpochStats(**h))
    metrics = tr.get("metrics", {})
    if not isinstance(metrics, dict):
        raise ValueError(f"{source}: trainer metrics must be a dict, got {type(metrics).__name__}")
    if not isinstance(tr["sample_shape"], (list, tuple)):
        raise ValueError(f"{source}: trainer sample_shape must be a list")
    return rebuilt


# --------------------------------------------------------------------------- the trainer's state


def trainer_state_dict(trainer: GANTrainer) -> dict[str, Any]:
    """Everything needed to continue ``trainer`` exactly: models, optimizers, progress, loader, RNGs.

    Raises:
        RuntimeError: the trainer is in the middle of a step (called from a ``NONFINITE``
            handler, or after a step was cut short by an exception): some of that step's
            updates and random draws have happened, so no checkpoint could resume exactly.
    """
    if getattr(trainer, "in_step", False):
        raise RuntimeError(f"cannot checkpoint in the middle of step {trainer.state.step + 1}: some of its updates "
                           "or random draws have already happened, so the run could not resume exactly. Save at a "
                           "step boundary (STEP_END, EPOCH_END), or load the last good checkpoint first")
    st = trainer.state
    data = trainer._data
    if trainer._pending_loader_state is not None:  # loaded but not yet handed to a fit: still the position
        loader = trainer._pending_loader_state
    else:
        loader = data.state_dict() if callable(getattr(data, "state_dict", None)) else None
    return {
        "generator": trainer.generator.state_dict(),
        "discriminator": trainer.discriminator.state_dict(),
        "g_optimizer": trainer.g_optimizer.state_dict(),
        "d_optimizer": trainer.d_optimizer.state_dict(),
        "regularizers": [r.state_dict() if hasattr(r, "state_dict") else None for r in trainer.regularizers],
        "trainer": {
            "epoch": st.epoch,
            "step": st.step,
            "epoch_step": st.epoch_step,
            "skipped_steps": st.skipped_steps,
            "history": [asdict(h) for h in st.history],
            "metrics": {k: _plain_metric(v) for k, v in st.metrics.items()},
            "epoch_sums": trainer._epoch_sums.detach().cpu().clone(),
            "latent_dim": trainer.latent_dim,
            "num_classes": trainer.num_classes,
            "sample_shape": list(trainer.sample_shape),
            "n_critic": trainer.n_critic,
            "world_size": trainer.world_size,
            "g_optimizer_type": type(trainer.g_optimizer).__name__,
            "d_optimizer_type": type(trainer.d_optimizer).__name__,
        },
        "loader": loader,
        "extra": {name: obj.state_dict() for name, obj in trainer._extra_state.items()},
        "rng": capture_rng_state(),
    }


def _plain_metric(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value)  # a 0-d tensor metric: a float, readable without torch
    if isinstance(value, np.generic) and isinstance(value, (np.number, np.bool_)):
        return value.item()
    return value


def load_trainer_state(trainer: GANTrainer, ckpt: dict[str, Any], source: str) -> None:
    """Check ``ckpt`` against ``trainer`` completely, then restore it; on any mismatch nothing changes.

    The loader position is kept for the next ``fit`` (which hands it to its data), so a
    fresh loader object over the same data continues where the saved one was.
    """
    if not isinstance(ckpt, dict):
        raise ValueError(f"{source}: expected a checkpoint dict, got {type(ckpt).__name__}")
    for key in ("generator", "discriminator", "g_optimizer", "d_optimizer", "trainer", "rng"):
        if key not in ckpt:
            raise ValueError(f"{source}: not a torchgan_lite checkpoint (no '{key}' entry)")
    check_module_state(source, "generator", trainer.generator, ckpt["generator"])
    check_module_state(source, "discriminator", trainer.discriminator, ckpt["discriminator"])
    tr = ckpt["trainer"]
    history = _check_trainer_entry(source, tr)
    if tr["latent_dim"] != trainer.latent_dim:
        raise ValueError(f"{source}: saved with latent_dim={tr['latent_dim']}, this trainer has {trainer.latent_dim}")
    if tuple(tr["sample_shape"]) != trainer.sample_shape:
        raise ValueError(f"{source}: saved for samples of shape {tuple(tr['sample_shape'])}, "
                         f"this trainer makes {trainer.sample_shape}")
    if tr.get("num_classes") != trainer.num_classes:
        raise ValueError(f"{source}: saved with num_classes={tr.get('num_classes')}, "
                         f"this trainer has {trainer.num_classes}")
    for name in ("g_optimizer", "d_optimizer"):
        _check_optimizer_state(source, name, getattr(trainer, name), ckpt[name], tr.get(f"{name}_type"))
    regs = ckpt.get("regularizers", [])
    if not isinstance(regs, list) or len(regs) not in (0, len(trainer.regularizers)):
        raise ValueError(f"{source}: saved with {len(regs) if isinstance(regs, list) else regs!r} regularizer "
                         f"states, this trainer has {len(trainer.regularizers)} regularizers")
    extra = ckpt.get("extra", {})
    if not isinstance(extra, dict):
        raise ValueError(f"{source}: 'extra' entry is {type(extra).__name__}, expected a dict")
    missing = [n for n in trainer._extra_state if n not in extra]
    if missing:
        raise ValueError(f"{source}: no saved state for registered {missing}")
    loader = ckpt.get("loader")
    if loader is not None and not isinstance(loader, dict):
        raise ValueError(f"{source}: 'loader' entry is {type(loader).__name__}, expected a dict or None")
    check_rng_state(ckpt["rng"], source)

    # Registered objects first: their load_state_dict is user code and may refuse; then
    # nothing of the trainer has changed yet.
    for name, obj in trainer._extra_state.items():
        obj.load_state_dict(extra[name])
    trainer.g_optimizer.load_state_dict(ckpt["g_optimizer"])
    trainer.d_optimizer.load_state_dict(ckpt["d_optimizer"])
    trainer.generator.load_state_dict(ckpt["generator"])
    trainer.discriminator.load_state_dict(ckpt["discriminator"])
    for reg, saved in zip(trainer.regularizers, regs):
        if saved is not None and hasattr(reg, "load_state_dict"):
            reg.load_state_dict(saved)
    st = trainer.state
    st.epoch, st.step, st.epoch_step = tr["epoch"], tr["step"], tr["epoch_step"]
    st.skipped_steps = int(tr.get("skipped_steps", 0))
    st.history = history
    st.metrics = {k: v for k, v in tr.get("metrics", {}).items()}
    st.last = None
    st.nonfinite = None
    trainer._epoch_sums = tr["epoch_sums"].to(trainer.device, torch.float32).clone()
    # A checkpoint is only written when no non-finite step is pending (check_finite=N), so
    # after loading one there is none: the run can go on from the last good state.
    trainer._first_bad_step = torch.full((), -1, dtype=torch.int64, device=trainer.device)
    if hasattr(trainer, "in_step"):
        trainer.in_step = False  # a step cut short before this load is forgotten with the rest
    # The next fit hands this to its data (a TensorLoader continues mid-epoch); until then a
    # save_checkpoint writes it again unchanged.
    trainer._pending_loader_state = loader
    restore_rng_state(ckpt["rng"])
