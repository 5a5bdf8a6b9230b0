"""Shared fixtures: tiny synthetic models and data, and the real-MNIST location."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch

from torchgan_lite import GANTrainer, seed_everything
from torchgan_lite.data import mnist as data
from torchgan_lite.losses import adversarial as losses
from torchgan_lite.nets import mlp as models

REPO = Path(__file__).resolve().parent.parent
_TRAIN_IMAGES = "train-images-idx3-ubyte"


def _has_mnist(folder: Path) -> bool:
    raw = folder / "MNIST" / "raw"
    return (raw / _TRAIN_IMAGES).exists() or (raw / f"{_TRAIN_IMAGES}.gz").exists()


@functools.cache
def find_mnist() -> tuple[Path | None, str]:
    """Real MNIST, found as the library finds it: ``$TORCHGAN_LITE_DATA``, else the user cache
    folder (``torchgan_lite.data.mnist.default_cache_dir()``), downloading it there once if it can.

    Returns:
        ``(folder, "")``, or ``(None, why)`` where no copy can be had (e.g. offline).
    """
    folder, download = data.resolve_data_root(None)
    if _has_mnist(folder):
        return folder, ""
    if not download:
        return None, f"${data.DATA_ENV_VAR}={folder} holds no MNIST/raw/{_TRAIN_IMAGES}"
    try:
        data.mnist(None)  # the library's own download into the cache folder
    except FileNotFoundError:
        return None, f"no copy in {folder} and none could be downloaded (offline?)"
    return folder, ""


def mnist_root() -> Path:
    """Where real MNIST is; skips the calling test, with how to enable it, when there is none."""
    folder, why = find_mnist()
    if folder is None:
        pytest.skip(f"real MNIST not available: {why}; set {data.DATA_ENV_VAR} to a folder holding MNIST/raw/ "
                    "to run the mnist tests")
    return folder


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the ``mnist`` tests, with one line saying how to enable them, where no MNIST can be had."""
    if not any(item.get_closest_marker("mnist") for item in items):
        return
    folder, why = find_mnist()
    if folder is not None:
        return
    skip = pytest.mark.skip(reason=f"real MNIST not available: {why}; set {data.DATA_ENV_VAR} to a folder "
                                   "holding MNIST/raw/ to run the mnist tests")
    for item in items:
        if item.get_closest_marker("mnist"):
            item.add_marker(skip)


@pytest.fixture
def mnist_dir() -> Path:
    return mnist_root()


def tiny_models(latent: int = 8, shape: tuple[int, ...] = (1, 4, 4), dropout: float = 0.0):
    g = models.mlp_generator(latent_dim=latent, hidden=(16,), out_shape=shape)
    d = models.mlp_discriminator(in_shape=shape, hidden=(16,), dropout=dropout)
    return g, d


@pytest.fixture
def tiny_trainer() -> GANTrainer:
    torch.manual_seed(0)
    g, d = tiny_models()
    seed_everything(0)
    return GANTrainer(g, d, losses.NonSaturatingLoss())


@pytest.fixture
def tiny_data() -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.rand(64, 1, 4, 4, generator=gen) * 2 - 1
