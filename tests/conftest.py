"""Shared fixtures: tiny synthetic models and data, and the real-MNIST location."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from torchgan_lite import GANTrainer, losses, models

REPO = Path(__file__).resolve().parent.parent


def mnist_root() -> Path:
    """Where real MNIST is: $TORCHGAN_LITE_DATA (CI sets it), else ../shared/data."""
    env = os.environ.get("TORCHGAN_LITE_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture
def mnist_dir() -> Path:
    root = mnist_root()
    if not (root / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.fail(f"real MNIST is required for this test but is not at {root}; set TORCHGAN_LITE_DATA")
    return root


def tiny_models(latent: int = 8, shape: tuple[int, ...] = (1, 4, 4), dropout: float = 0.0):
    g = models.mlp_generator(latent_dim=latent, hidden=(16,), out_shape=shape)
    d = models.mlp_discriminator(in_shape=shape, hidden=(16,), dropout=dropout)
    return g, d


@pytest.fixture
def tiny_trainer() -> GANTrainer:
    torch.manual_seed(0)
    g, d = tiny_models()
    return GANTrainer(g, d, losses.NonSaturatingLoss(), seed=0)


@pytest.fixture
def tiny_data() -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.rand(64, 1, 4, 4, generator=gen) * 2 - 1
