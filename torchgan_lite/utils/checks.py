"""The one argument checker of the library: each check names the argument, the value and what was expected.

The command line's argparse types are in :mod:`torchgan_lite.cli.common`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["check_bool", "check_float", "check_int", "check_path", "check_stream", "describe"]


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


def check_float(name: str, value: object, low: float = -math.inf, high: float = math.inf, *,
                low_open: bool = False, high_open: bool = False, allow_inf: bool = False) -> float:
    """``value`` as a float if it is a real number (not a bool) in ``[low, high]``, finite unless ``allow_inf``.

    ``low_open``/``high_open`` exclude the bound. Raises ``TypeError`` for a non-number (or a
    bool), ``ValueError`` for NaN, an infinity or a value out of range, naming ``name``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {describe(value)}")
    v = float(value)
    if math.isnan(v) or (math.isinf(v) and not allow_inf):
        raise ValueError(f"{name} must be {'a number' if allow_inf else 'finite'}, got {v}")
    too_low = v <= low if low_open else v < low
    too_high = v >= high if high_open else v > high
    if too_low or too_high:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ValueError(f"{name} must be in {lo}{low}, {high}{hi}, got {v}")
    return v


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
