"""The checkpoint file format: atomic write, checksums, safe load, rotation.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it
loads with ``torch.load(weights_only=True)``: no code from the file is ever run.
What would not load that way (a NumPy array, a custom object in a callback's
state) is refused when *saving*, naming the entry, rather than discovered when
the run needs resuming; NumPy scalars (a metric computed with NumPy) are stored
as Python numbers. What the dict holds is its owners' business (the trainer
composes it); this module imports nothing from the trainer.

Writing goes through :func:`torchgan_lite.checkpoints.atomic.atomic_open`: a temporary file in
the same folder (permissions from the umask), flushed and fsync'ed, renamed over
the target with ``os.replace``. A process killed at any moment leaves either the old
file or the new one, never a torn one. With ``keep_last=K`` the previous K files are
kept as ``NAME.1`` (newest) ... ``NAME.K``: after the new file is durable, each older
name is replaced by a hard link to (or a copy of) its newer neighbour, oldest first,
then the new file is renamed over ``NAME``. So ``NAME`` never disappears once
written, and a kill at any point leaves the kept copies without a hole (at worst one
duplicate, which the next save shifts out). :func:`latest_checkpoint` finds the
newest copy that verifies.

Every file carries CRC-32 checksums of each tensor and of the rest of its content,
checked on loading; a file without them is refused. ``torch.load`` checks none of
the zip CRCs ``torch.save`` writes, so without ours a flipped bit in the weights would
load as a silently different model. Temporary files left by a killed writer
(``.NAME.HOST-PID.XXXX.tmp``) are removed by the next save on that host.

A truncated, corrupted or foreign file raises ``ValueError`` naming the file and the
reason (for a pickle that weights-only loading refuses, torch's own reason, such as
"module posix is blocked"). See ``docs/reliability.md`` for the guarantees and the
tests that show them.
"""

from __future__ import annotations

import os
import re
import zlib
from collections import Counter, OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from torchgan_lite.checkpoints.atomic import atomic_open, fsync_dir, link_or_copy, remove_stale_temporaries
from torchgan_lite.utils.runtime import resolve_device

__all__ = [
    "FORMAT", "FORMATS", "check_keep_last", "latest_checkpoint", "load_checkpoint", "sanitize_for_save",
    "save_checkpoint", "verify_checksums"
]

FORMAT = "torchgan_lite.checkpoint/2"  # 2: the step owns its state (docs/architecture.md)
#: Every format :func:`load_checkpoint` reads (older ones are converted by whoever reads their content).
FORMATS = frozenset({"torchgan_lite.checkpoint/1", "torchgan_lite.checkpoint/2", FORMAT})

# Types that torch.load(weights_only=True) rebuilds by default (torch/_weights_only_unpickler.py).
_PLAIN = (str, bytes, bytearray, int, float, bool, complex, type(None), torch.dtype, torch.device, torch.Size)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


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
    data = cast(Any, flat.view(torch.uint8).numpy())  # a buffer (numpy's stubs do not say so)
    return zlib.crc32(data, zlib.crc32(header)) if flat.numel() else zlib.crc32(header)


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

    The checksums are mandatory: every file :func:`save_checkpoint` writes carries them, so a
    file without them was written or edited by something else (``torch.save`` of an edited
    checkpoint drops nothing, but a hand-built dict has none) and is refused.
    ``torch.load`` itself checks none of the CRC-32s of the zip records ``torch.save`` writes
    (measured on torch 2.14: a flipped weight byte, or an edited number in ``data.pkl``, loads
    silently), and a file re-saved after an edit gets fresh zip CRCs, so these checksums are ours.
    """
    if not isinstance(ckpt, dict):
        raise TypeError(f"ckpt must be a checkpoint dict, got {type(ckpt).__name__}")
    saved = ckpt.get("checksums")
    if saved is None:
        raise ValueError(f"checkpoint {source} has no checksums: every file torchgan_lite writes carries them, so "
                         "this one was written or edited by something else, and is refused rather than trusted")
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

    The new file is written and fsync'ed first; only then do the older copies shift
    (:func:`_shift_copies`), and the new file is renamed over ``path`` last. A kill at any
    moment leaves ``path`` (once it was ever written) and an unbroken run
    ``path.1 ... path.M`` in which no name holds a newer file than a lower number.

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
        OSError: the write failed (a full disk, no permission); the message names ``path``
            and the cause, the previous checkpoint files are unchanged and no temporary is left.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    if isinstance(path, str) and not path.strip():
        raise ValueError(f"path must be a non-empty file path, got {path!r}")
    keep = check_keep_last(keep_last)
    if not isinstance(obj, dict):
        raise TypeError(f"obj must be a dict, got {type(obj).__name__}")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path {path} is a folder; give the checkpoint file's path")
    payload = sanitize_for_save({"format": FORMAT, **obj})
    payload["checksums"] = _checksums(payload)
    for i in range(1, min(keep, _copies(path, keep) + 1) + 1):
        remove_stale_temporaries(_copy_name(path, i))  # staged copies of a rotation a kill interrupted

    def rotate() -> None:
        if keep and path.exists():
            _shift_copies(path, keep)
            fsync_dir(path.parent)

    with atomic_open(path, "wb", before_replace=rotate, what="save the checkpoint") as f:
        torch.save(payload, f)
    return path


def check_keep_last(keep_last: object) -> int:
    """``keep_last`` as an int (None is 0); ``TypeError``/``ValueError`` naming it unless None or an int >= 0."""
    if keep_last is None:
        return 0
    if isinstance(keep_last, bool) or not isinstance(keep_last, int):
        kind = f"the class {keep_last.__qualname__}" if isinstance(keep_last, type) else repr(keep_last)
        raise TypeError(f"keep_last must be None or an int >= 0, got {kind}")
    if keep_last < 0:
        raise ValueError(f"keep_last must be None or an int >= 0, got {keep_last!r}")
    return keep_last


def _copy_name(path: Path, i: int) -> Path:
    return path.with_name(f"{path.name}.{i}")


def _shift_copies(path: Path, keep: int) -> None:
    """Copy down from the oldest: ``NAME.(K-1) -> NAME.K``, ..., ``NAME.1 -> NAME.2``, ``NAME -> NAME.1``.

    Each move replaces one name, atomically, with a hard link to (or a durable copy of)
    its newer neighbour, which stays in place. A kill between two moves therefore leaves
    a duplicate (``NAME.i`` equal to ``NAME.(i+1)``), never a missing name; the next
    save shifts the duplicate out. (Renaming ``NAME.1`` away first, as a plain shift
    does, leaves a hole at ``NAME.1`` until the next save.)
    """
    for i in range(min(keep - 1, _copies(path, keep)), -1, -1):  # as many moves as there are files, not keep
        newer = path if i == 0 else _copy_name(path, i)
        if newer.exists():
            link_or_copy(newer, _copy_name(path, i + 1))


def _copies(path: Path, keep: int) -> int:
    """How many of ``NAME.1``, ``NAME.2``, ... exist without a gap (at most ``keep``)."""
    n = 0
    while n < keep and _copy_name(path, n + 1).exists():
        n += 1
    return n


def latest_checkpoint(folder_or_path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> Path | None:
    """The newest checkpoint that loads and passes its checksums, or None when there is none.

    Args:
        folder_or_path: A checkpoint path ``NAME``: the first of ``NAME``, ``NAME.1``,
            ``NAME.2``... that verifies (the rotation keeps them newest first). A folder:
            among every file in it (temporaries excluded) that verifies, the one written
            last (modification time, which rotation preserves; ``NAME.i`` before
            ``NAME.(i+1)`` on a tie).
        map_location: Passed to :func:`load_checkpoint` while verifying.

    Raises:
        TypeError, ValueError: ``folder_or_path`` is not a str or os.PathLike, or ``map_location``
            is not one :func:`load_checkpoint` takes.
    """
    if not isinstance(folder_or_path, (str, os.PathLike)):
        raise TypeError(f"folder_or_path must be a str or os.PathLike, got {type(folder_or_path).__name__}")
    if isinstance(folder_or_path, str) and not folder_or_path.strip():
        raise ValueError(f"folder_or_path must name a folder or a checkpoint file, got {folder_or_path!r}")
    map_location = _check_map_location(map_location)  # here: a bad one would make every candidate look damaged
    target = Path(folder_or_path)
    if target.is_dir():
        folder, base = target, None
    else:
        folder, base = target.parent, target.name
    try:
        entries = [p for p in folder.iterdir() if not p.name.startswith(".") and p.is_file()]
    except OSError:
        return None
    ranked: list[tuple[int, int, str, Path]] = []
    for p in entries:
        stem, _, number = p.name.rpartition(".")
        index = int(number) if number.isdigit() and stem else 0
        if base is not None:
            if p.name == base:
                ranked.append((0, 0, "", p))
            elif stem == base and number.isdigit():
                ranked.append((0, int(number), "", p))
            continue
        try:
            mtime = p.stat().st_mtime_ns
        except OSError:
            continue
        ranked.append((-mtime, index, p.name, p))
    for *_, p in sorted(ranked):
        try:
            load_checkpoint(p, map_location=map_location)
        except (OSError, ValueError):
            continue
        return p
    return None


# --------------------------------------------------------------------------- reading


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)``, check its format and its checksums.

    Args:
        path: The checkpoint file.
        map_location: As for ``torch.load``: a device (str or ``torch.device``), a dict mapping
            saved locations to new ones, or a function ``(storage, location) -> storage``.

    Raises:
        TypeError: ``path`` is not a str or os.PathLike, or ``map_location`` none of the above.
        FileNotFoundError: no such file.
        ValueError: a folder, an empty, truncated, corrupted or foreign file, one holding
            Python objects that weights_only loading refuses (the message gives torch's
            reason, e.g. "module posix is blocked"), one without checksums, or one whose
            content fails them (the message names the file, and the damaged tensor when it is one).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    map_location = _check_map_location(map_location)
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
    if not isinstance(ckpt, dict) or ckpt.get("format") not in FORMATS:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"checkpoint {path} is not a torchgan_lite checkpoint (format {found!r}, "
                         f"expected {FORMAT!r})")
    verify_checksums(ckpt, str(path))
    return ckpt


def _check_map_location(map_location: object) -> Any:
    """``map_location`` ready for ``torch.load``; checked here, so that torch's error about it is not
    reported as a damaged file."""
    if isinstance(map_location, (str, torch.device)):
        try:
            dev = resolve_device(map_location)
        except ValueError as err:
            raise ValueError(f"map_location: {err}") from None
        return torch.device("cpu") if dev.type == "cpu" else dev  # torch.load cannot place storages on 'cpu:0'
    if not (map_location is None or isinstance(map_location, (torch.device, dict))
              or (callable(map_location) and not isinstance(map_location, type))):
        kind = f"the class {map_location.__qualname__}" if isinstance(map_location, type) else repr(map_location)
        raise TypeError(f"map_location must be a device, a dict or a function (storage, location) -> storage, "
                        f"got {kind}")
    return map_location


# Sentences of torch's load errors that are advice, not the reason (one of them says to load unsafely).
_ADVICE = ("Weights only load failed", "Check the documentation", "This file can still be loaded",
           "Re-running `torch.load`", "Alternatively, to load with", "Please file an issue", "In PyTorch 2.6",
           "Do it only if", "This is an internal miniz error", "If you are seeing this error", "This can happen if")
_REFUSED_CODE = ("unsupported global", "is blocked", "not an allowed global", "unsupported class")


def _describe_load_error(err: Exception) -> str:
    """What went wrong in one line: the reason torch gives, without its advice (one piece of which is to load
    the file unsafely)."""
    raw = _ANSI.sub("", str(err))
    weights_only = "Weights only load failed" in raw or "WeightsUnpickler error:" in raw
    if "WeightsUnpickler error:" in raw:
        raw = raw.split("WeightsUnpickler error:", 1)[1]
    raw = re.split(r"Please use `torch\.serialization|Check the documentation", raw)[0]
    kept = [part.strip() for part in re.split(r"\n+|(?<=[.?!])\s+", raw)
            if part.strip() and not part.strip().lstrip("(0123456789) ").startswith(_ADVICE)]
    reason = " ".join(" ".join(kept).split())
    if weights_only:
        reason = reason.rstrip(".") + "." if reason else "no reason given."
        if any(word in reason.lower() for word in _REFUSED_CODE):
            return (f"it holds Python objects that safe loading (weights_only=True) refuses: {reason} "
                    "It was not written by torchgan_lite, and no code from it was run")
        return f"its pickled content is corrupted or foreign: {reason} No code from it was run"
    return f"truncated, corrupted, or not a torchgan_lite checkpoint ({type(err).__name__}: {reason[:300]})"
