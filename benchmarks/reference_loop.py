"""A faithful copy of the tutorial's MNIST MLP GAN loop: the benchmarks' baseline.

This is the classic "vanilla GAN on MNIST" loop of ``docs/reference-recipe.md`` as the
tutorial writes it, with exactly two changes, both needed to benchmark the *correct*
algorithm without globals:

1. the missing call ``d_loss = discriminator_train_step(real, fake, ...)`` is made
   (the tutorial logs a D loss it never computes);
2. the models, optimizers, loss and device are passed as arguments instead of being
   read from module-level globals.

Everything else is kept on purpose, because it is what the library is measured
against: plain ``nn.Sequential`` models with the final ``Sigmoid`` and ``nn.BCELoss``;
PyTorch's default ``Adam(lr=2e-4)`` (its default implementation choice, whatever the
device); noise drawn on the CPU and copied to the device; label tensors built on the
CPU and copied to the device on every call; two backward passes in the D step
(real, then fake); a ``.detach()`` of fakes whose graph through G was already built;
a generator step that also computes gradients for all of D's weights (thrown away by
the next ``d_optimizer.zero_grad()``); each loss read on the host with ``.item()``
every step (the tutorial's per-step log); and data from ``torchvision.datasets.MNIST``
with ``ToTensor()`` then ``Normalize(0.5, 0.5)`` applied to each image, every epoch,
through a ``DataLoader(batch_size, shuffle=True, drop_last=True)`` with the default
``num_workers=0``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

__all__ = [
    "LATENT_DIM",
    "ReferenceLoop",
    "discriminator_train_step",
    "endless_batches",
    "generator_train_step",
    "mnist_dataloader",
    "mnist_dataset",
    "noise",
    "reference_discriminator",
    "reference_generator",
]

LATENT_DIM = 100


def reference_discriminator() -> nn.Sequential:
    """The tutorial's discriminator, 1,460,225 parameters: ``(B, 784) -> (B, 1)`` probabilities."""
    return nn.Sequential(
        nn.Linear(784, 1024),
        nn.LeakyReLU(0.2),
        nn.Dropout(0.3),
        nn.Linear(1024, 512),
        nn.LeakyReLU(0.2),
        nn.Dropout(0.3),
        nn.Linear(512, 256),
        nn.LeakyReLU(0.2),
        nn.Dropout(0.3),
        nn.Linear(256, 1),
        nn.Sigmoid(),
    )


def reference_generator() -> nn.Sequential:
    """The tutorial's generator, 1,486,352 parameters: ``(B, 100) -> (B, 784)`` in [-1, 1]."""
    return nn.Sequential(
        nn.Linear(LATENT_DIM, 256),
        nn.LeakyReLU(0.2),
        nn.Linear(256, 512),
        nn.LeakyReLU(0.2),
        nn.Linear(512, 1024),
        nn.LeakyReLU(0.2),
        nn.Linear(1024, 784),
        nn.Tanh(),
    )


def noise(size: int, device: torch.device) -> torch.Tensor:
    """The tutorial's noise: drawn on the CPU, then copied to the device. ``(size, 100)``."""
    n = torch.randn(size, LATENT_DIM)
    return n.to(device)


def discriminator_train_step(
    discriminator: nn.Module,
    real_data: torch.Tensor,
    fake_data: torch.Tensor,
    d_optimizer: torch.optim.Optimizer,
    loss: nn.Module,
    device: torch.device,
) -> torch.Tensor:
    """The tutorial's D step: two forward/backward passes (real, then fake), one update.

    Args:
        discriminator: D, ``(B, 784) -> (B, 1)`` probabilities.
        real_data: Real images ``(B, 784)`` on ``device``.
        fake_data: Detached fakes ``(B, 784)`` on ``device``.
        d_optimizer: D's optimizer.
        loss: ``nn.BCELoss()``.
        device: Where the label tensors are copied to.

    Returns:
        ``error_real + error_fake``, a 0-d tensor (not detached, as in the tutorial).
    """
    d_optimizer.zero_grad()
    prediction_real = discriminator(real_data)  # (B, 1)
    error_real = loss(prediction_real, torch.ones(len(real_data), 1).to(device))
    error_real.backward()
    prediction_fake = discriminator(fake_data)  # (B, 1)
    error_fake = loss(prediction_fake, torch.zeros(len(fake_data), 1).to(device))
    error_fake.backward()
    d_optimizer.step()
    return error_real + error_fake


def generator_train_step(
    discriminator: nn.Module,
    real_data: torch.Tensor,
    fake_data: torch.Tensor,
    g_optimizer: torch.optim.Optimizer,
    loss: nn.Module,
    device: torch.device,
) -> torch.Tensor:
    """The tutorial's G step: backward through D into G (D's weight gradients included).

    Args:
        discriminator: D, whose weights are *not* updated here but whose ``.grad`` is
            filled (the tutorial's wasted work).
        real_data: The real batch, used only for its length (as in the tutorial).
        fake_data: Fakes ``(B, 784)`` with their graph through G.
        g_optimizer: G's optimizer.
        loss: ``nn.BCELoss()``.
        device: Where the label tensor is copied to.

    Returns:
        The generator loss, a 0-d tensor.
    """
    g_optimizer.zero_grad()
    prediction = discriminator(fake_data)  # (B, 1)
    error = loss(prediction, torch.ones(len(real_data), 1).to(device))
    error.backward()
    g_optimizer.step()
    return error


def mnist_dataset(root: str | os.PathLike[str], train: bool = True) -> Dataset:
    """The tutorial's data set: torchvision MNIST with per-image ``ToTensor()`` + ``Normalize(0.5, 0.5)``.

    Args:
        root: Folder holding ``MNIST/raw/`` (torchvision's layout); nothing is downloaded.
        train: The 60,000 training images.

    Returns:
        A data set whose items are ``(image (1, 28, 28) in [-1, 1], label)``, converted
        from PIL one image at a time on every access.
    """
    from torchvision import transforms
    from torchvision.datasets import MNIST

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(0.5, 0.5)])
    return MNIST(root=str(root), train=train, download=False, transform=transform)


def mnist_dataloader(dataset: Dataset, batch_size: int = 128) -> DataLoader:
    """The tutorial's loader: ``DataLoader(batch_size, shuffle=True, drop_last=True)``, ``num_workers=0``.

    Args:
        dataset: :func:`mnist_dataset`.
        batch_size: The recipe's 128.

    Returns:
        A loader yielding ``(images (B, 1, 28, 28), labels (B,))``.
    """
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True)


@dataclass
class ReferenceLoop:
    """The tutorial's models, optimizers and loss on one device, and its loop body.

    Build with :meth:`create`. ``history`` holds the per-step ``(d_loss, g_loss)``
    floats the tutorial logs.
    """

    generator: nn.Module
    discriminator: nn.Module
    g_optimizer: torch.optim.Optimizer
    d_optimizer: torch.optim.Optimizer
    loss: nn.Module
    device: torch.device
    history: list[tuple[float, float]] = field(default_factory=list)

    @classmethod
    def create(cls, device: torch.device | str = "cpu") -> ReferenceLoop:
        """The recipe's G and D, two ``Adam(lr=2e-4)`` (PyTorch's defaults otherwise), ``BCELoss``."""
        device = torch.device(device)
        discriminator = reference_discriminator().to(device)
        generator = reference_generator().to(device)
        d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=2e-4)
        g_optimizer = torch.optim.Adam(generator.parameters(), lr=2e-4)
        return cls(generator, discriminator, g_optimizer, d_optimizer, nn.BCELoss(), device)

    def step(self, images: torch.Tensor) -> tuple[float, float]:
        """One iteration of the tutorial's inner loop, with the D step called.

        Args:
            images: A batch ``(B, 1, 28, 28)`` (or ``(B, 784)``), on any device.

        Returns:
            ``(d_loss, g_loss)`` read with ``.item()``, as the tutorial logs them.
        """
        g, d, dev = self.generator, self.discriminator, self.device
        real_data = images.view(len(images), -1).to(dev)  # (B, 784)
        fake_data = g(noise(len(real_data), dev)).to(dev)  # (B, 784), graph through G built
        fake_data = fake_data.detach()
        d_loss = discriminator_train_step(d, real_data, fake_data, self.d_optimizer, self.loss, dev)  # the fix
        fake_data = g(noise(len(real_data), dev)).to(dev)  # (B, 784)
        g_loss = generator_train_step(d, real_data, fake_data, self.g_optimizer, self.loss, dev)
        record = (d_loss.item(), g_loss.item())
        self.history.append(record)
        return record

    def train(self, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], epochs: int) -> None:
        """The tutorial's outer loop: ``epochs`` passes over ``loader``."""
        for _epoch in range(epochs):
            for images, _ in loader:
                self.step(images)


def endless_batches(loader: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> Iterator[torch.Tensor]:
    """The images of ``loader``, epoch after epoch (a new shuffled pass each time)."""
    for _epoch in itertools.count():
        for images, _ in loader:
            yield images
