"""Devices and seeds: ``resolve_device`` (checked ``torch.device`` from a string), ``seed_everything``,
``fast_autocast`` (whether bfloat16 autocast is a speed-up on a device) and ``retain_freed_memory``
(glibc's malloc keeps freed CPU memory for the next step instead of returning it to the kernel).
"""

from __future__ import annotations

import ctypes
import os
import platform
import random

import numpy as np
import torch

from torchgan_lite.utils.checks import check_int, describe

__all__ = ["cpu_bf16_instructions", "fast_autocast", "resolve_device", "retain_freed_memory", "seed_everything"]

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


# mallopt(3) parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: glibc's largest M_MMAP_THRESHOLD on a 64-bit system (HEAP_MAX_SIZE / 2).
MAX_MMAP_THRESHOLD = 32 * 2**20
_USER_MALLOC_ENV = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")
_retained: bool | None = None


def _user_chose_allocator() -> str | None:
    for name in _USER_MALLOC_ENV:
        if name in os.environ:
            return name
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return "GLIBC_TUNABLES"
    if "malloc" in os.environ.get("LD_PRELOAD", ""):  # jemalloc, tcmalloc, mimalloc
        return "LD_PRELOAD"
    return None


def retain_freed_memory(mmap_threshold: int = MAX_MMAP_THRESHOLD, trim_threshold: int = 2**30) -> bool:
    """Let glibc's malloc keep freed CPU memory in the process, so a training step stops page-faulting.

    A CPU step allocates and frees tens of MB of gradients and activations. glibc serves buffers
    above its mmap threshold with fresh ``mmap`` pages and returns the top of its heap to the kernel
    whenever more than its trim threshold is free there, so the next step touches new pages: about
    2,000 page faults a step in the MLP recipe at batch 128, each zeroing a page (docs/benchmarks.md
    measures what it costs). This raises both thresholds with ``mallopt(3)`` (public glibc API, no
    torch internals), as ``GLIBC_TUNABLES=glibc.malloc.trim_threshold=...:glibc.malloc.mmap_threshold=...``
    would: buffers up to ``mmap_threshold`` come from the heap, and freed memory stays for reuse until
    more than ``trim_threshold`` is free at its top. The cost: the process's resident memory stays
    near its peak instead of shrinking between steps.

    It changes the whole process, so the library never calls it on its own; ``torchgan-lite-train``
    (and ``examples/mnist_mlp.py``) call it once at start. It does nothing and returns False where the
    C library is not glibc, or where the user already chose (``MALLOC_TRIM_THRESHOLD_``,
    ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TOP_PAD_``, ``glibc.malloc.*`` in ``GLIBC_TUNABLES``, an
    allocator in ``LD_PRELOAD``). Calling it again returns the first call's answer.

    Args:
        mmap_threshold: Bytes; allocations at least this large still get their own mapping
            (at most :data:`MAX_MMAP_THRESHOLD`).
        trim_threshold: Bytes of free memory at the heap's top past which glibc returns it.

    Returns:
        True if both settings were applied.

    Raises:
        ValueError: a threshold outside ``[2**17, MAX_MMAP_THRESHOLD]`` / ``[2**17, 2**31 - 1]``.
    """
    global _retained
    check_int("mmap_threshold", mmap_threshold, 2**17)
    check_int("trim_threshold", trim_threshold, 2**17)
    if mmap_threshold > MAX_MMAP_THRESHOLD:
        raise ValueError(f"mmap_threshold must be <= {MAX_MMAP_THRESHOLD} (glibc's limit), got {mmap_threshold}")
    if trim_threshold > 2**31 - 1:
        raise ValueError(f"trim_threshold must be <= 2**31 - 1 (a C int), got {trim_threshold}")
    if _retained is not None:
        return _retained
    _retained = False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc" or _user_chose_allocator() is not None:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # Trim first: setting either one turns off glibc's moving thresholds, which is what is wanted.
    _retained = bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold)) and bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold))
    return _retained
