"""The checkpoint file format: atomic write, safe and checked load, kept copies, discovery.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it
loads with ``torch.load(weights_only=True)``: no code from the file is ever run.
What would not load that way (a NumPy array, a custom object in a callback's
state) is refused when *saving*, naming the entry, rather than discovered when
the run needs resuming; NumPy scalars (a metric computed with NumPy) are stored
as Python numbers. What the dict holds is its owners' business (the trainer
composes it); this module imports nothing from the trainer.

Writing goes through :func:`torchgan_lite.utils.atomic.atomic_open`: a temporary file in
the same folder (permissions from the umask), flushed and fsync'ed, renamed over
the target with ``os.replace``. A process killed at any moment leaves either the old
file or the new one, never a torn one. With ``keep_last=K`` the file also gets a
step-numbered name and the K older steps are kept beside it
(:mod:`torchgan_lite.checkpoints.rotation`); :func:`latest_checkpoint` finds the newest
one that loads.

Damage is found with the CRC-32 that ``torch.save``'s zip format stores for every record
(each tensor's storage, the pickled structure): ``torch.load`` checks none of them, so
:func:`load_checkpoint` has ``zipfile`` check them all first (``ZipFile.testzip``) and
refuses a file whose bytes changed after it was written, naming the damaged record. A
file edited and saved again by ``torch.save`` has fresh CRCs, and is as trusted as any
file torch writes: the CRCs catch damage, not deliberate edits.

Loading also refuses a file in which a tensor (weights, optimizer state, a registered
state such as an EMA) holds a NaN or infinity, naming the first such tensor (the trainer
never saves one, so another tool or a bug wrote it); ``allow_nonfinite=True`` loads it
with a warning.

A truncated, corrupted or foreign file raises ``ValueError`` naming the file and the
reason (for a pickle that weights-only loading refuses, torch's own reason, such as
"module posix is blocked"). See ``docs/reliability.md`` for the guarantees and the
tests that show them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings
import zipfile
from collections import Counter, OrderedDict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from torchgan_lite.checkpoints.rotation import numbered_copies, parse_numbered, rotate
from torchgan_lite.utils.atomic import atomic_open, describe_os_error
from torchgan_lite.utils.checks import check_bool, check_path, describe
from torchgan_lite.utils.runtime import resolve_device

__all__ = [
    "FORMAT", "check_keep_last", "first_nonfinite", "latest_checkpoint", "load_checkpoint", "sanitize_for_save",
    "save_checkpoint"
]

FORMAT = "torchgan_lite.checkpoint/2"  # 2: the step owns its state (docs/architecture.md)
_FORMAT_1 = "torchgan_lite.checkpoint/1"  # before the step redesign: no longer read

# Types that torch.load(weights_only=True) rebuilds by default (torch/_weights_only_unpickler.py).
_PLAIN = (str, bytes, bytearray, int, float, bool, complex, type(None), torch.dtype, torch.device, torch.Size)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_DOS_FOLDER = 0x10  # the folder bit of a zip entry's external attributes (MS-DOS attribute byte)
log = logging.getLogger(__name__)


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




@contextlib.contextmanager
def _zip_crcs() -> Iterator[None]:
    """``torch.save`` with a CRC-32 for every record, whatever ``torch.serialization.set_crc32_options`` says
    (loading checks them)."""
    get = getattr(torch.serialization, "get_crc32_options", None)  # torch >= 2.6; before it, always computed
    if get is None or get():
        yield
        return
    torch.serialization.set_crc32_options(True)
    try:
        yield
    finally:
        torch.serialization.set_crc32_options(False)


def _step_of(obj: Mapping[str, Any], step: object) -> int:
    """The step that numbers a kept copy: ``step``, else the trainer's (``obj["trainer"]["step"]``)."""
    if step is None:
        trainer = obj.get("trainer")
        step = trainer.get("step") if isinstance(trainer, Mapping) else None
        if step is None:
            raise ValueError("step must be given with keep_last: the kept copies are named by their step, and obj "
                             "has no trainer step (obj['trainer']['step'])")
    if isinstance(step, bool) or not isinstance(step, int):
        raise TypeError(f"step must be None or an int >= 0, got {describe(step)}")
    if step < 0:
        raise ValueError(f"step must be None or an int >= 0, got {step}")
    return step


def save_checkpoint(obj: dict[str, Any], path: str | os.PathLike[str], keep_last: int | None = None, *,
                    step: int | None = None) -> Path:
    """Write ``obj`` to ``path`` atomically; with ``keep_last``, keep step-numbered copies beside it.

    Args:
        obj: A dict of tensors and plain Python values (checked with :func:`sanitize_for_save`
            before anything is written).
        path: Target file; its folder is created.
        keep_last: None or 0: only ``path`` (numbered files already there are left alone). K: ``path``
            is also kept as ``STEM-000001200.SUFFIX`` (a hard link, or a copy), and the numbered files
            of the K + 1 newest steps up to this one stay; older ones, and any from later steps
            (a continuation abandoned by resuming an earlier checkpoint), are removed.
        step: The step that numbers the kept copy (default ``obj["trainer"]["step"]``); only used
            with ``keep_last``.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        TypeError, ValueError: a bad argument, named; or ``obj`` holds something
            ``torch.load(weights_only=True)`` could not load. Nothing is written.
        OSError: the write failed (a full disk, no permission); the message names ``path``
            and the cause, the previous checkpoint files are unchanged and no temporary is left.
    """
    path = check_path("path", path)
    keep = check_keep_last(keep_last)
    if not isinstance(obj, dict):
        raise TypeError(f"obj must be a dict, got {type(obj).__name__}")
    if path.is_dir():
        raise ValueError(f"path {path} is a folder; give the checkpoint file's path")
    number = _step_of(obj, step) if keep else None
    payload = sanitize_for_save({"format": FORMAT, **obj})
    with _zip_crcs(), atomic_open(path, "wb", what="save the checkpoint") as f:
        torch.save(payload, f)
    if number is not None:
        rotate(path, number, keep)
    return path


def check_keep_last(keep_last: object) -> int:
    """``keep_last`` as an int (None is 0); ``TypeError``/``ValueError`` naming it unless None or an int >= 0."""
    if keep_last is None:
        return 0
    if isinstance(keep_last, bool) or not isinstance(keep_last, int):
        raise TypeError(f"keep_last must be None or an int >= 0, got {describe(keep_last)}")
    if keep_last < 0:
        raise ValueError(f"keep_last must be None or an int >= 0, got {keep_last!r}")
    return keep_last


# --------------------------------------------------------------------------- discovery


def _saved_step(ckpt: Mapping[str, Any]) -> int:
    trainer = ckpt.get("trainer")
    step = trainer.get("step") if isinstance(trainer, Mapping) else None
    return step if type(step) is int else -1


def latest_checkpoint(folder_or_path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> Path | None:
    """The newest checkpoint that loads (:func:`load_checkpoint` refuses nothing in it), or None.

    Newest means the highest step: a step-numbered file (``checkpoint-000001200.pt``) by
    the number in its name, any other file by the step it records (``ckpt["trainer"]["step"]``).
    A file ``NAME`` stands for its own numbered copies: it is always the last one written,
    so they count only when ``NAME`` does not load (a torn or damaged file). Modification
    times are never used. A candidate that does not load is logged and passed over.

    Args:
        folder_or_path: A checkpoint path ``NAME``: ``NAME`` if it loads, else the newest of its
            numbered copies that does. A folder: among every file in it (hidden ones excluded),
            the one with the highest step that loads; on a tie, a file not numbered, then by name.
        map_location: Passed to :func:`load_checkpoint` while verifying.

    Raises:
        TypeError, ValueError: ``folder_or_path`` is not a str or os.PathLike, or ``map_location``
            is not one :func:`load_checkpoint` takes.
    """
    target = check_path("folder_or_path", folder_or_path)
    map_location = _check_map_location(map_location)  # here: a bad one would make every candidate look damaged
    heads: list[Path] = []  # files not numbered, ranked by the step they record (so they are loaded first)
    numbered: list[tuple[int, Path]] = []  # step-numbered files, ranked by the step in their name
    if target.is_dir():
        try:
            files = sorted(p for p in target.iterdir() if not p.name.startswith(".") and p.is_file())
        except OSError:
            return None
        for p in files:
            parsed = parse_numbered(p.name)
            if parsed is None:
                heads.append(p)
            else:
                numbered.append((parsed[1], p))
    else:
        heads = [target] if target.is_file() else []
        numbered = numbered_copies(target)

    def loads(p: Path) -> bool:
        try:
            ranked_steps[p] = _saved_step(load_checkpoint(p, map_location=map_location))
        except (OSError, ValueError) as err:
            log.warning("passing over %s: %s", p, err)
            return False
        return True

    ranked_steps: dict[Path, int] = {}
    good_heads = {p.name for p in heads if loads(p)}
    ranked = [(-ranked_steps[p], 0, p.name, p) for p in heads if p.name in good_heads]
    for number, p in numbered:
        parsed = parse_numbered(p.name)
        if parsed is not None and parsed[0] not in good_heads:  # a head that loads stands for its own copies
            ranked.append((-number, 1, p.name, p))
    for _, is_copy, _, p in sorted(ranked):
        if not is_copy or loads(p):
            return p
    return None


# --------------------------------------------------------------------------- reading


def first_nonfinite(ckpt: Mapping[str, Any]) -> str | None:
    """The key path of the first floating tensor holding NaN or infinity in a checkpoint, or None.

    Every tensor counts: both networks, the step (optimizer, regularizer and augmentation
    state), registered extras such as an EMA, the epoch's running sums. Plain numbers
    (metrics, hyper-parameters) may be NaN by design and are not looked at. The key path
    reads as the dict it came from: ``step['d_optimizer']['state'][0]['exp_avg_sq']``.
    """
    def walk(obj: Any, where: str) -> str | None:
        if isinstance(obj, torch.Tensor):
            if obj.is_floating_point() and obj.numel() and not bool(torch.isfinite(obj).all()):
                return where
            return None
        items = obj.items() if isinstance(obj, Mapping) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
        for key, value in items:
            found = walk(value, f"{where}[{key!r}]")
            if found:
                return found
        return None

    for key, value in ckpt.items():
        found = walk(value, str(key))
        if found:
            return found
    return None


def _check_zip_crcs(path: Path, size: int) -> None:
    """Refuse ``path`` if a record of its zip archive fails its CRC-32 (``torch.load`` checks none of them)."""
    try:
        if not zipfile.is_zipfile(path):
            return  # not a zip at all: torch.load says what it is instead (truncated, legacy format, a pickle...)
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            sized = [info for info in infos if info.file_size]
            no_crcs = bool(sized) and all(info.CRC == 0 for info in sized)
            # torch's reader (miniz) skips an entry flagged as a folder and hands back uninitialised memory for
            # it; zipfile reads it as a file. torch.save writes no folders, so such a flag is damage.
            folder = next((info.filename for info in infos if info.external_attr & _DOS_FOLDER), None)
            bad = None if no_crcs or folder else archive.testzip()
    except OSError as err:
        raise ValueError(f"checkpoint {path} cannot be read: {describe_os_error(err)}") from err
    except Exception as err:  # zipfile on damaged metadata: BadZipFile, EOFError, RuntimeError ("encrypted")...
        raise ValueError(f"checkpoint {path} ({size} bytes) is corrupted: its zip structure is damaged "
                         f"({type(err).__name__}: {err})") from err
    if folder is not None:
        raise ValueError(f"checkpoint {path} is corrupted: record {folder!r} is flagged as a folder in the zip "
                         "directory: the file was damaged after it was written")
    if no_crcs:
        raise ValueError(f"checkpoint {path} was written without CRC-32s (torch.serialization.set_crc32_options("
                         "False)), so damage to it could not be detected; torchgan_lite always writes them. If you "
                         "trust it, torch.load it and save it again with save_checkpoint")
    if bad is not None:
        what = "the pickled structure (progress, settings, tensor layout)" if bad.endswith("data.pkl") \
            else "a tensor's storage" if "/data/" in bad else "a record"
        raise ValueError(f"checkpoint {path} is corrupted: record {bad!r}, {what}, fails its CRC-32 check: the "
                         "file was damaged after it was written")


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu", *,
                    allow_nonfinite: bool = False) -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)`` after checking its zip CRCs; check its format.

    Args:
        path: The checkpoint file.
        map_location: As for ``torch.load``: a device (str or ``torch.device``), a dict mapping
            saved locations to new ones, or a function ``(storage, location) -> storage``.
        allow_nonfinite: Load a checkpoint whose trained state holds a NaN or infinity, with a
            ``RuntimeWarning`` naming the tensor (default: refuse it).

    Raises:
        TypeError: ``path`` is not a str or os.PathLike, ``map_location`` none of the above, or
            ``allow_nonfinite`` not a bool.
        FileNotFoundError: no such file.
        ValueError: a folder, an empty, truncated, corrupted or foreign file, one holding
            Python objects that weights_only loading refuses (the message gives torch's
            reason, e.g. "module posix is blocked"), one of format 1, or one whose weights,
            optimizer or registered state holds a NaN or infinity (the message names the tensor).
    """
    path = check_path("path", path)
    map_location = _check_map_location(map_location)
    check_bool("allow_nonfinite", allow_nonfinite)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise ValueError(f"checkpoint {path} is not a file")
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"checkpoint {path} is empty (0 bytes): not a torchgan_lite checkpoint")
    _check_zip_crcs(path, size)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise ValueError(f"checkpoint {path} ({size} bytes) cannot be read: {_describe_load_error(err)}") from err
    found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
    if found == _FORMAT_1:
        raise ValueError(f"checkpoint {path} is in format {_FORMAT_1!r} (written before the step redesign), which "
                         f"this version no longer reads (it reads {FORMAT!r}): resume it once with an earlier "
                         "torchgan_lite, whose save writes the current format, or build the networks yourself and "
                         "load ckpt['generator'] and ckpt['discriminator'] into them")
    if found != FORMAT:
        raise ValueError(f"checkpoint {path} is not a torchgan_lite checkpoint (format {found!r}, "
                         f"expected {FORMAT!r})")
    ckpt.pop("checksums", None)  # written by 0.1.0 before the zip CRCs were checked instead; nothing reads it
    bad = first_nonfinite(ckpt)
    if bad is not None:
        message = (f"checkpoint {path} holds a NaN or infinity in {bad}: torchgan_lite never saves one, so another "
                   "tool or a bug wrote it, and training or sampling from it gives NaN")
        if not allow_nonfinite:
            raise ValueError(f"{message}; go back to an earlier checkpoint, or pass allow_nonfinite=True to load it "
                             "anyway")
        warnings.warn(f"{message}; loading it because allow_nonfinite=True", RuntimeWarning, stacklevel=2)
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
