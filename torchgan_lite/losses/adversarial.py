"""GAN losses as pure functions of discriminator logits, and penalties on the discriminator.

Nothing here calls ``backward()`` or steps an optimizer (TF-GAN's ``losses_impl``
design): a loss object returns a scalar tensor, and the trainer adds the
regularizers into the *same* discriminator backward pass.

Every loss object has two methods, both returning a scalar:

- ``discriminator_loss(real_logits, fake_logits)``, lower when the discriminator
  scores real samples high and fake samples low;
- ``generator_loss(fake_logits)``, lower when fakes are scored high.

Logits are the raw outputs of the discriminator (``(B,)``), never probabilities:
``softplus(-x) = -log(sigmoid(x))`` is the binary cross-entropy with label 1,
computed without forming ``sigmoid(x)`` (safe at large ``|x|`` and under autocast).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

__all__ = [
    "GANLoss", "HingeLoss", "LeastSquaresLoss", "MinimaxLoss", "NonSaturatingLoss", "WassersteinLoss",
    "hinge_discriminator_loss", "hinge_generator_loss", "least_squares_discriminator_loss",
    "least_squares_generator_loss", "minimax_generator_loss", "nonsaturating_discriminator_loss",
    "nonsaturating_generator_loss", "wasserstein_discriminator_loss", "wasserstein_generator_loss"
]


# --------------------------------------------------------------------------- functional forms


def nonsaturating_discriminator_loss(
    real_logits: torch.Tensor, fake_logits: torch.Tensor, real_label: float = 1.0
) -> torch.Tensor:
    """``BCE(D(x), real_label) + BCE(D(G(z)), 0)``: the sum of two batch means (the recipe's).

    ``real_label < 1`` is one-sided label smoothing (Salimans et al. 2016).
    """
    if real_label == 1.0:
        real_term = F.softplus(-real_logits).mean()  # BCE with label 1
    else:
        real_term = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, real_label))
    return real_term + F.softplus(fake_logits).mean()  # BCE with label 0


def nonsaturating_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """``BCE(D(G(z)), 1) = -log D(G(z))``: strong gradients while D rejects the fakes."""
    return F.softplus(-fake_logits).mean()


def minimax_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """``log(1 - D(G(z)))``, the original saturating objective (weak gradients early on)."""
    return -F.softplus(fake_logits).mean()


def least_squares_discriminator_loss(
    real_logits: torch.Tensor, fake_logits: torch.Tensor, real_target: float = 1.0, fake_target: float = 0.0
) -> torch.Tensor:
    """LSGAN (Mao et al. 2017): ``0.5 E[(D(x)-b)^2] + 0.5 E[(D(G(z))-a)^2]``."""
    return 0.5 * (real_logits - real_target).square().mean() + 0.5 * (fake_logits - fake_target).square().mean()


def least_squares_generator_loss(fake_logits: torch.Tensor, target: float = 1.0) -> torch.Tensor:
    """LSGAN generator: ``0.5 E[(D(G(z))-c)^2]``."""
    return 0.5 * (fake_logits - target).square().mean()


def wasserstein_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """WGAN critic: ``E[D(G(z))] - E[D(x)]`` (pair it with a Lipschitz constraint such as GradientPenalty)."""
    return fake_logits.mean() - real_logits.mean()


def wasserstein_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """WGAN generator: ``-E[D(G(z))]``."""
    return -fake_logits.mean()


def hinge_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge (Lim & Ye 2017; SAGAN): ``E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]``."""
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def hinge_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge generator: ``-E[D(G(z))]``."""
    return -fake_logits.mean()


# --------------------------------------------------------------------------- loss objects


@runtime_checkable
class GANLoss(Protocol):
    """What the trainer needs of a loss: two pure functions of logits, each a scalar."""

    def discriminator_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor: ...

    def generator_loss(self, fake_logits: torch.Tensor) -> torch.Tensor: ...


def _check_finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite float, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class NonSaturatingLoss:
    """The reference recipe's binary cross-entropy (Goodfellow et al. 2014, non-saturating G).

    Attributes:
        real_label: Target for real samples; 1.0 is the recipe, 0.9 is one-sided
            label smoothing.
    """

    real_label: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < _check_finite("real_label", self.real_label) <= 1.0:
            raise ValueError(f"real_label must be in (0, 1], got {self.real_label}")

    def discriminator_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return nonsaturating_discriminator_loss(real_logits, fake_logits, self.real_label)

    def generator_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return nonsaturating_generator_loss(fake_logits)


@dataclass(frozen=True)
class MinimaxLoss:
    """The original minimax GAN: BCE discriminator, saturating generator ``log(1 - D(G(z)))``."""

    def discriminator_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return nonsaturating_discriminator_loss(real_logits, fake_logits)

    def generator_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return minimax_generator_loss(fake_logits)


@dataclass(frozen=True)
class LeastSquaresLoss:
    """LSGAN with targets ``a`` (fake), ``b`` (real), ``c`` (what G wants D to say); the 0-1-1 scheme by default."""

    fake_target: float = 0.0
    real_target: float = 1.0
    generator_target: float = 1.0

    def __post_init__(self) -> None:
        for name in ("fake_target", "real_target", "generator_target"):
            _check_finite(name, getattr(self, name))

    def discriminator_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return least_squares_discriminator_loss(real_logits, fake_logits, self.real_target, self.fake_target)

    def generator_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return least_squares_generator_loss(fake_logits, self.generator_target)


@dataclass(frozen=True)
class WassersteinLoss:
    """WGAN (Arjovsky et al. 2017). Use with ``GradientPenalty`` and ``n_critic=5`` (WGAN-GP)."""

    def discriminator_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return wasserstein_discriminator_loss(real_logits, fake_logits)

    def generator_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return wasserstein_generator_loss(fake_logits)


@dataclass(frozen=True)
class HingeLoss:
    """Hinge loss, as in SAGAN and BigGAN."""

    def discriminator_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return hinge_discriminator_loss(real_logits, fake_logits)

    def generator_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return hinge_generator_loss(fake_logits)
