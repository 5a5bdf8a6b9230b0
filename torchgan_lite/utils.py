"""Small helpers shared by the trainer, the examples and the command-line tools."""

from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["check_bool", "check_int", "resolve_device", "seed_everything"]


def check_bool(name: str, value: object) -> bool:
    """``value`` if it is a bool; else ``TypeError`` naming ``name``."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value


def check_int(name: str, value: object, minimum: int = 1) -> int:
    """``value`` if it is an int (not a bool) ``>= minimum``; else ``TypeError``/``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def resolve_device(device: torch.device | str) -> torch.device:
    """Turn ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"auto"`` or a ``torch.device`` into a checked device.

    ``"auto"`` is CUDA when it is available, else the CPU. A CUDA device that is not
    there raises ``ValueError`` rather than failing later inside torch. A bare
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
        raise TypeError(f"device must be a str or torch.device, got {type(device).__name__}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={str(dev)!r} but CUDA is not available here; use 'cpu' or 'auto'")
        index = torch.cuda.current_device() if dev.index is None else dev.index
        if index >= torch.cuda.device_count():
            raise ValueError(f"device={str(dev)!r} but only {torch.cuda.device_count()} CUDA device(s) exist")
        dev = torch.device("cuda", index)
    elif dev.type not in ("cpu", "mps", "xpu"):
        raise ValueError(f"device type {dev.type!r} is not supported; use 'cpu' or 'cuda'")
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
