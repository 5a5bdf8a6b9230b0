"""GAN losses as pure functions of discriminator logits, and penalties on the discriminator.

Nothing here calls ``backward()`` or steps an optimizer (TF-GAN's ``losses_impl``
design): a loss object returns a scalar tensor, and the trainer adds the
regularizers into the *same* discriminator backward pass.

Every loss object has two methods, both returning a scalar:

- ``discriminator_loss(real_logits, fake_logits)``, lower when the discriminator
  scores real samples high and fake samples low;
- ``generator_loss(fake_logits)``, lower when fakes are scored high.

A *relativistic* loss, whose generator side compares each fake with a real sample, sets
the class attribute ``needs_real_logits = True``: the step then also scores the real batch
in the generator update and calls ``generator_loss(fake_logits, real_logits)`` (those real
logits carry no graph: D's parameters are frozen there and the real batch is data).
:class:`RelativisticPairingLoss` is one; every other loss's step is unchanged.

Logits are the raw outputs of the discriminator (``(B,)``), never probabilities:
``softplus(-x) = -log(sigmoid(x))`` is the binary cross-entropy with label 1,
computed without forming ``sigmoid(x)`` (safe at large ``|x|`` and under autocast).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

import torch
import torch.nn.functional as F

__all__ = [
    "GANLoss", "HingeLoss", "LeastSquaresLoss", "MinimaxLoss", "NonSaturatingLoss", "RelativisticPairingLoss",
    "WassersteinLoss", "hinge_discriminator_loss", "hinge_generator_loss", "least_squares_discriminator_loss",
    "least_squares_generator_loss", "minimax_generator_loss", "nonsaturating_discriminator_loss",
    "nonsaturating_generator_loss", "relativistic_pairing_discriminator_loss",
    "relativistic_pairing_generator_loss", "wasserstein_discriminator_loss", "wasserstein_generator_loss"
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


def _check_pairs(first: str, a: torch.Tensor, second: str, b: torch.Tensor) -> None:
    """The two logits of a relativistic loss pair up sample by sample: one shape, no broadcasting."""
    for name, t in ((first, a), (second, b)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a tensor of logits, got {type(t).__name__}")
    if a.shape != b.shape:
        raise ValueError(f"{first} and {second} must have one shape (sample i of each forms pair i), got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")


def relativistic_pairing_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """RpGAN discriminator: ``E[softplus(-(D(x_i) - D(G(z_i))))]`` over the pairs ``(x_i, G(z_i))``.

    Jolicoeur-Martineau 2018's relativistic pairing loss, the objective of R3GAN (Huang et
    al. 2024): D is asked that each real sample scores above the fake it is paired with,
    not that either crosses a fixed threshold. ``softplus(-d) = -log(sigmoid(d))``, stable at large ``|d|``.

    Args:
        real_logits: ``D(x)``, ``(B,)`` (any shape, equal to ``fake_logits``'s).
        fake_logits: ``D(G(z))``, the same shape: element i is paired with ``real_logits[i]``.
    """
    _check_pairs("real_logits", real_logits, "fake_logits", fake_logits)
    return F.softplus(fake_logits - real_logits).mean()  # softplus(-(real - fake))


def relativistic_pairing_generator_loss(fake_logits: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    """RpGAN generator: ``E[softplus(-(D(G(z_i)) - D(x_i)))]``, the discriminator's loss with the roles swapped.

    Args:
        fake_logits: ``D(G(z))``, ``(B,)``; the gradient to G flows through these.
        real_logits: ``D(x)``, the same shape (constants for G).
    """
    _check_pairs("fake_logits", fake_logits, "real_logits", real_logits)
    return F.softplus(real_logits - fake_logits).mean()  # softplus(-(fake - real))


# --------------------------------------------------------------------------- loss objects


@runtime_checkable
class GANLoss(Protocol):
    """What the trainer needs of a loss: two pure functions of logits, each a scalar.

    A loss may also set ``needs_real_logits = True`` (see the module docstring): its generator
    loss is then called ``generator_loss(fake_logits, real_logits)``.
    """

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


@dataclass(frozen=True)
class RelativisticPairingLoss:
    """RpGAN (Jolicoeur-Martineau 2018), the loss of R3GAN (Huang et al. 2024, "The GAN is dead; long live the GAN!").

    ``D: E[softplus(D(G(z_i)) - D(x_i))]``, ``G: E[softplus(D(x_i) - D(G(z_i)))]``: each real
    sample of a batch is paired with the fake at its index. R3GAN pairs it with R1 and R2
    (:class:`~torchgan_lite.losses.penalties.R1Penalty`, :class:`~torchgan_lite.losses.penalties.R2Penalty`),
    which together make it converge locally without other tricks.

    The generator side needs D's logits on a real batch, so the step scores one in the
    generator update as well (``needs_real_logits``): one more discriminator forward per
    generator update, without a backward through it.

    Attributes:
        needs_real_logits: True (a class attribute): the step calls ``generator_loss(fake_logits, real_logits)``.
    """

    needs_real_logits: ClassVar[bool] = True

    def discriminator_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return relativistic_pairing_discriminator_loss(real_logits, fake_logits)

    def generator_loss(self, fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
        """The generator's loss; ``real_logits`` (the same shape as ``fake_logits``) is required.

        It is optional in the signature only so that the class still type-checks as a
        :class:`GANLoss`; without it the call raises ``TypeError`` naming it.
        """
        if real_logits is None:
            raise TypeError("RelativisticPairingLoss.generator_loss needs real_logits, D's logits on a real batch "
                            "paired with the fakes: call generator_loss(fake_logits, real_logits) (the training "
                            "step does, since the loss sets needs_real_logits = True)")
        return relativistic_pairing_generator_loss(fake_logits, real_logits)
