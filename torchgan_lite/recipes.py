"""Named training recipes: the loss, regularizers, optimizers, augmentation and callbacks of a run.

A recipe turns a generator and a discriminator into the parts a :class:`~torchgan_lite.GANTrainer`
needs, so that the examples and the training CLI build every recipe the same way:

    parts = build_parts("improved", generator, discriminator, loss="nonsaturating")
    trainer = GANTrainer(generator, discriminator, parts.loss, g_optimizer=parts.g_optimizer,
                         d_optimizer=parts.d_optimizer, n_critic=parts.n_critic,
                         regularizers=parts.regularizers, augment=parts.augment)
    for callback in parts.callbacks:      # before trainer.load_checkpoint, so a resume restores their state
        callback.attach(trainer)

``RECIPES`` names each recipe with a one-line description (for ``--help``); the
measurements behind them are in docs/recipes.md. ``"reference"`` is the tutorial
recipe of docs/reference-recipe.md, bit for bit: non-saturating BCE, fused
``Adam(2e-4)`` with PyTorch's default betas for both networks, one D step per G step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from . import losses
from .ema import GeneratorEMA
from .utils import check_int

__all__ = ["LOSSES", "RECIPES", "TrainingParts", "build_parts", "make_loss"]

#: The GAN losses a recipe can train with; wgan-gp is WassersteinLoss + GradientPenalty(10) with 5 critic steps.
LOSSES: tuple[str, ...] = ("nonsaturating", "minimax", "lsgan", "wgan-gp", "hinge")

#: Recipe name -> one-line description (for ``--help``); docs/recipes.md has the measurements.
RECIPES: dict[str, str] = {
    "reference": "the tutorial recipe: Adam(2e-4), default betas, real label 1 (docs/reference-recipe.md)",
    "improved": "Adam betas (0.5, 0.999), real label 0.9, generator EMA 0.999 with 500 warm-up updates",
}


@dataclass
class TrainingParts:
    """What a recipe hands the trainer (and the callbacks to attach to it).

    Attributes:
        loss: The value-only GAN loss.
        regularizers: Discriminator penalties, added to its loss (see docs/architecture.md).
        g_optimizer: The generator's optimizer.
        d_optimizer: The discriminator's optimizer.
        n_critic: Discriminator updates per generator update.
        augment: A differentiable ``x -> x`` applied to every discriminator input, or None.
        callbacks: Objects with ``attach(trainer)`` (e.g. GeneratorEMA); attach them before
            ``load_checkpoint`` so that a resumed run restores their state.
    """

    loss: losses.GANLoss
    regularizers: list[Any]
    g_optimizer: torch.optim.Optimizer
    d_optimizer: torch.optim.Optimizer
    n_critic: int
    augment: nn.Module | None = None
    callbacks: list[Any] = field(default_factory=list)


def make_loss(name: str, real_label: float = 1.0) -> tuple[losses.GANLoss, list[Any], int]:
    """The loss object, its discriminator regularizers and its default n_critic for a name in :data:`LOSSES`.

    Args:
        name: One of :data:`LOSSES`.
        real_label: The non-saturating loss's real target (1: the recipe; 0.9: one-sided smoothing).
            Ignored by the other losses.
    """
    if name not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {name!r}")
    if name == "wgan-gp":
        return losses.WassersteinLoss(), [losses.GradientPenalty(weight=10.0)], 5
    table: dict[str, Callable[[], losses.GANLoss]] = {
        "nonsaturating": lambda: losses.NonSaturatingLoss(real_label=real_label),
        "minimax": losses.MinimaxLoss, "lsgan": losses.LeastSquaresLoss, "hinge": losses.HingeLoss}
    return table[name](), [], 1


def _adam(module: nn.Module, lr: float, betas: tuple[float, float]) -> torch.optim.Adam:
    # fused: one kernel per parameter group, as the trainer's default optimizer (the reference recipe's).
    return torch.optim.Adam(module.parameters(), lr=lr, betas=betas, fused=True)


def build_parts(recipe: str, generator: nn.Module, discriminator: nn.Module, *, loss: str = "nonsaturating",
                lr: float | None = None, n_critic: int | None = None,
                steps_per_epoch: int | None = None) -> TrainingParts:
    """Build a named recipe's training parts for ``generator`` and ``discriminator``.

    Args:
        recipe: A name in :data:`RECIPES`.
        generator: The generator (its parameters go to ``g_optimizer``).
        discriminator: The discriminator (its parameters go to ``d_optimizer``).
        loss: A name in :data:`LOSSES`.
        lr: Adam's learning rate of both networks. None: the recipe's (2e-4).
        n_critic: Discriminator updates per generator update. None: the loss's default (5 for wgan-gp, else 1).
        steps_per_epoch: Steps in one epoch, for recipes whose schedules count epochs. None: unknown.

    Returns:
        The parts; the callbacks are not attached yet.
    """
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {tuple(RECIPES)}, got {recipe!r}")
    for name, module in (("generator", generator), ("discriminator", discriminator)):
        if not isinstance(module, nn.Module):
            raise TypeError(f"{name} must be a torch.nn.Module, got {type(module).__name__}")
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0):
        raise ValueError(f"lr must be a float > 0, got {lr!r}")
    if n_critic is not None:
        check_int("n_critic", n_critic)
    if steps_per_epoch is not None:
        check_int("steps_per_epoch", steps_per_epoch)
    lr = 2e-4 if lr is None else float(lr)

    if recipe == "reference":
        gan_loss, regularizers, default_n_critic = make_loss(loss)
        return TrainingParts(gan_loss, regularizers, _adam(generator, lr, (0.9, 0.999)),
                             _adam(discriminator, lr, (0.9, 0.999)), n_critic or default_n_critic)
    # "improved": DCGAN's betas, one-sided label smoothing, a generator EMA.
    gan_loss, regularizers, default_n_critic = make_loss(loss, real_label=0.9)
    betas = (0.5, 0.999)
    return TrainingParts(gan_loss, regularizers, _adam(generator, lr, betas), _adam(discriminator, lr, betas),
                         n_critic or default_n_critic,
                         callbacks=[GeneratorEMA(decay=0.999, warmup_steps=500)])
