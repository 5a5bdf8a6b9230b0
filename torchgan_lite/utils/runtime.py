"""Devices and seeds: ``resolve_device`` (checked ``torch.device`` from a string), ``seed_everything``,
and ``fast_autocast`` (whether bfloat16 autocast is a speed-up on a device).
"""

from __future__ import annotations

import random

import numpy as np
import torch

from torchgan_lite.utils.checks import check_int, describe

__all__ = ["cpu_bf16_instructions", "fast_autocast", "resolve_device", "seed_everything"]

#: The /proc/cpuinfo flags of CPUs with bfloat16 matrix instructions (AVX512-BF16 dot products, AMX tiles).
_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_bf16_instructions(cpuinfo: str = "/proc/cpuinfo") -> list[str]:
    """This CPU's bfloat16 instruction sets (``["amx_bf16", "avx512_bf16"]``...), from ``cpuinfo``.

    Empty where the CPU has none, or where the file cannot be read (not Linux).
    """
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return sorted(_BF16_FLAGS & set(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return []


def fast_autocast(device: torch.device | str) -> str | None:
    """``"bf16"`` where bfloat16 autocast speeds the step up on ``device``, else None (float32).

    A CUDA GPU with bfloat16 support (Ampere and newer), or a CPU with AVX512-BF16 or AMX
    instructions. On a CPU without them bfloat16 products are emulated and far slower than
    float32 (docs/benchmarks.md), so bfloat16 is not offered as a speed-up there.
    """
    dev = resolve_device(device)
    if dev.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else None
    if dev.type == "cpu":
        return "bf16" if cpu_bf16_instructions() else None
    return None


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
    check_int("seed", seed, 0)
    if not seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA too
