"""Small helpers shared by the trainer, the examples and the command-line tools."""

from __future__ import annotations

import argparse
import math
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "check_bool",
    "check_int",
    "check_path",
    "check_stream",
    "describe",
    "non_negative_int",
    "positive_float",
    "positive_int",
    "resolve_device",
    "seed_everything",
]


def describe(value: object) -> str:
    """``value`` for an error message; a class is named as one (``the class io.StringIO``), so a class
    passed where an instance is expected reads as that mistake."""
    if isinstance(value, type):
        return f"the class {value.__module__}.{value.__qualname__} (an instance was expected)"
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def check_bool(name: str, value: object) -> bool:
    """``value`` if it is a bool; else ``TypeError`` naming ``name``."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {describe(value)}")
    return value


def check_int(name: str, value: object, minimum: int = 1) -> int:
    """``value`` if it is an int (not a bool) ``>= minimum``; else ``TypeError``/``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {describe(value)}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_path(name: str, value: object) -> Path:
    """``value`` as a ``Path`` if it is a non-empty str or os.PathLike; else ``TypeError``/``ValueError``."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike, got {describe(value)}")
    if isinstance(value, str) and not value.strip():
        raise ValueError(f"{name} must be a non-empty path, got {value!r}")
    return Path(value)


def check_stream(name: str, value: object) -> object:
    """``value`` if it is None or an open text stream (an object with ``write``); else ``TypeError`` naming ``name``."""
    if value is not None and (isinstance(value, type) or not callable(getattr(value, "write", None))):
        raise TypeError(f"{name} must be None or a text stream with write() (sys.stderr, a file opened "
                        f"with open(..., 'w')), got {describe(value)}")
    return value


def resolve_device(device: torch.device | str) -> torch.device:
    """Turn ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"auto"`` or a ``torch.device`` into a checked device.

    ``"auto"`` is CUDA when it is available, else the CPU. A device that is not there
    (CUDA without a GPU, an index past the last GPU, ``"mps"``/``"xpu"`` where torch has
    no such backend available) or of a type the library does not run on (``"meta"``...)
    raises ``ValueError`` naming it, rather than failing later inside torch. A bare
    ``"cuda"`` gets the current device's index, so comparing devices is exact.
    """
    if isinstance(device, str):
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            dev = torch.device(device)
        except RuntimeError as err:
            raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}") from err
    elif isinstance(device, torch.device):
        dev = device
    else:
        raise TypeError(f"device must be a str or torch.device, got {describe(device)}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={str(dev)!r} but CUDA is not available here; use 'cpu' or 'auto'")
        index = torch.cuda.current_device() if dev.index is None else dev.index
        if index >= torch.cuda.device_count():
            raise ValueError(f"device={str(dev)!r} but only {torch.cuda.device_count()} CUDA device(s) exist")
        dev = torch.device("cuda", index)
    elif dev.type in ("mps", "xpu"):
        backend = torch.backends.mps if dev.type == "mps" else getattr(torch, "xpu", None)
        if backend is None or not backend.is_available():
            raise ValueError(f"device={str(dev)!r} but torch has no {dev.type} device available here; "
                             "use 'cpu', 'cuda' or 'auto'")
    elif dev.type != "cpu":
        raise ValueError(f"device={str(dev)!r}: device type {dev.type!r} is not supported; use 'cpu', 'cuda' "
                         "or 'auto'")
    return dev


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy and torch (CPU and every CUDA device)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA too


# --------------------------------------------------------------------------- command-line argument types


def _cli_number(text: str, convert: Callable[[str], Any], ok: Callable[[Any], bool], expected: str) -> Any:
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
    return value


def positive_int(text: str) -> int:
    """An ``argparse`` type: a whole number >= 1, else a one-line error naming the text."""
    return int(_cli_number(text, int, lambda v: v >= 1, "a whole number >= 1"))


def non_negative_int(text: str) -> int:
    """An ``argparse`` type: a whole number >= 0."""
    return int(_cli_number(text, int, lambda v: v >= 0, "a whole number >= 0"))


def positive_float(text: str) -> float:
    """An ``argparse`` type: a finite number > 0."""
    return float(_cli_number(text, float, lambda v: math.isfinite(v) and v > 0, "a finite number > 0"))
