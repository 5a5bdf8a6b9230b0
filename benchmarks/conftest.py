"""Fixtures of the benchmarks: where MNIST is, the data sets (built once), quick mode.

The benchmarks are run explicitly (``pytest benchmarks ...``); the normal test suite
collects only ``tests/``. ``TORCHGAN_LITE_BENCH_QUICK=1`` shrinks every case to one
short round: a smoke run of the harness, not a measurement. ``TORCHGAN_LITE_BENCH_SCALE=0.5``
halves every case's steps and rounds (rounding up).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from .reference_loop import mnist_dataset

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def quick() -> bool:
    """Whether ``TORCHGAN_LITE_BENCH_QUICK`` asks for a smoke run."""
    return os.environ.get("TORCHGAN_LITE_BENCH_QUICK", "") not in ("", "0")


@pytest.fixture(scope="session")
def scale() -> float:
    """``TORCHGAN_LITE_BENCH_SCALE`` (default 1): multiplies every case's steps and rounds."""
    raw = os.environ.get("TORCHGAN_LITE_BENCH_SCALE", "1")
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= 10:
        raise ValueError(f"TORCHGAN_LITE_BENCH_SCALE must be a number in (0, 10], got {raw!r}")
    return value


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    """``$TORCHGAN_LITE_DATA``, else ``../shared/data``; fails (never downloads) when MNIST is not there."""
    env = os.environ.get("TORCHGAN_LITE_DATA")
    root = Path(env) if env else REPO.parent / "shared" / "data"
    if not (root / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.fail(f"the end-to-end benchmarks need real MNIST, which is not at {root}: "
                    "set TORCHGAN_LITE_DATA to a folder holding MNIST/raw/")
    return root


@pytest.fixture(scope="session")
def reference_dataset(mnist_root: Path) -> Dataset:
    """The tutorial's torchvision MNIST with its per-image transforms (built once)."""
    return mnist_dataset(mnist_root)


@pytest.fixture(scope="session")
def library_images(mnist_root: Path) -> Callable[[str], torch.Tensor]:
    """``get(device)``: MNIST decoded once by the library, ``(60000, 1, 28, 28)`` on the device."""
    from torchgan_lite.data import mnist as data

    cache: dict[str, torch.Tensor] = {}

    def get(device: str) -> torch.Tensor:
        if device not in cache:
            cache[device] = data.mnist(mnist_root, device=device)
        return cache[device]

    return get
