"""Named training recipes: the loss, regularizers, optimizers, augmentation and callbacks of a run.

A recipe turns a generator and a discriminator into the parts a :class:`~torchgan_lite.GANTrainer`
needs, so that the examples and the training CLI build every recipe the same way:

    parts = build_parts("improved", generator, discriminator, loss="nonsaturating")
    trainer = GANTrainer(generator, discriminator, parts.loss, g_optimizer=parts.g_optimizer,
                         d_optimizer=parts.d_optimizer, step=parts.step_config())
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

from torchgan_lite.callbacks.ada import AdaptiveAugment
from torchgan_lite.callbacks.ema import GeneratorEMA
from torchgan_lite.losses import adversarial as losses
from torchgan_lite.losses import penalties
from torchgan_lite.losses.augment import DiffAugment
from torchgan_lite.losses.penalties import LazyRegularizer, LeCamRegularizer, lazy_adam_hparams
from torchgan_lite.nets.spectral import apply_spectral_norm
from torchgan_lite.training.factory import StepConfig
from torchgan_lite.utils.checks import check_float, check_int

__all__ = ["LOSSES", "RECIPES", "SPECS", "RecipeSpec", "TrainingParts", "build_parts", "make_loss"]

#: The GAN losses a recipe can train with; wgan-gp is WassersteinLoss + GradientPenalty(10) with 5 critic steps;
#: rpgan is the relativistic pairing loss (R3GAN's; pair it with R1 and R2, as the "rpgan-r1r2" recipe does).
LOSSES: tuple[str, ...] = ("nonsaturating", "minimax", "lsgan", "wgan-gp", "hinge", "rpgan")



@dataclass(frozen=True)
class RecipeSpec:
    """What a recipe changes from the reference recipe (every default is the reference's).

    Attributes:
        description: One line for ``--help``.
        betas: Adam's betas of both networks (reference: PyTorch's (0.9, 0.999); DCGAN: (0.5, 0.999)).
        real_label: The non-saturating loss's real target (0.9: one-sided label smoothing).
        g_lr, d_lr: Learning rates; None: the ``lr`` given to :func:`build_parts` (default 2e-4).
            Different values are the two-time-scale update rule (TTUR: G 1e-4, D 4e-4).
        ema_decay, ema_warmup: A generator EMA by decay (:class:`~torchgan_lite.GeneratorEMA`); None: none.
        ema_half_life_images, ema_rampup: A generator EMA by half-life in images
            (:meth:`GeneratorEMA.from_half_life`, StyleGAN2-ADA's ema_kimg/ema_rampup); None: none.
        augment_policy: DiffAugment's policy; None: no augmentation.
        ada_target: With ``augment_policy``: start at p = 0 and let ADA steer p towards this
            ``E[sign(D(real))]``; None: p = 1 throughout (DiffAugment).
        lecam_weight: LeCam regularisation weight; 0: none.
        r1_gamma, r1_every: R1 penalty (0: none), evaluated lazily every ``r1_every`` D updates with
            StyleGAN2's correction of D's Adam hyperparameters (1: every update, no correction).
        spectral_norm: Spectral norm on every Linear/Conv layer of the discriminator.
        loss: The recipe's loss, a name in :data:`LOSSES`; None: :func:`build_parts`' ``loss``
            argument (default "nonsaturating").
        r2_gamma: R2 penalty (R1 on the fakes; 0: none), lazy with R1's ``r1_every``.
    """

    description: str
    betas: tuple[float, float] = (0.9, 0.999)
    real_label: float = 1.0
    g_lr: float | None = None
    d_lr: float | None = None
    ema_decay: float | None = None
    ema_warmup: int = 0
    ema_half_life_images: float | None = None
    ema_rampup: float | None = 0.05
    augment_policy: str | None = None
    ada_target: float | None = None
    lecam_weight: float = 0.0
    r1_gamma: float = 0.0
    r1_every: int = 16
    spectral_norm: bool = False
    loss: str | None = None
    r2_gamma: float = 0.0


#: The recipes, by name. docs/recipes.md has the measurements behind them.
SPECS: dict[str, RecipeSpec] = {
    "reference": RecipeSpec("the tutorial recipe: Adam(2e-4), default betas, real label 1 "
                            "(docs/reference-recipe.md)"),
    "improved": RecipeSpec("Adam betas (0.5, 0.999), real label 0.9, generator EMA 0.999 with 500 warm-up updates",
                           betas=(0.5, 0.999), real_label=0.9, ema_decay=0.999, ema_warmup=500),
    # The best unconditional recipe measured (docs/recipes.md): FD of its EMA below "improved"'s at every
    # scored epoch from 10 to 50 on the CPU (22.5 against 37.0 at 50 epochs, seed 0; 12.6 at 100), and far
    # steadier over seeds at 20 epochs. For the conditional GAN "improved" is better (98.3-98.4 % class
    # accuracy over 3 seeds at 30 epochs, every digit at least 95.9 %).
    "improved-r1": RecipeSpec("improved + R1 (gamma 10) every 16 D updates with StyleGAN2's Adam correction",
                              betas=(0.5, 0.999), real_label=0.9, ema_decay=0.999, ema_warmup=500,
                              r1_gamma=10.0, r1_every=16),
    # R3GAN's objective (Huang et al. 2024): the relativistic pairing loss with R1 and R2 at every D update (not
    # lazy), Adam betas (0, 0.99) (R3GAN: beta1 0 throughout, beta2 ramped 0.9 -> 0.99; here the final value from
    # the start). gamma 0.05 is R3GAN's CIFAR-10 value (32x32, the closest of its presets to MNIST's 28x28; it
    # uses 0.5-2 at 32-64 px on ImageNet/FFHQ and 150 at 256 px), without R3GAN's decay of gamma and lr over
    # training. The generator EMA is improved's, so the two compare. Measured (docs/recipes.md): on 32x32 RGB
    # colour digits with DCGAN nets it beats "dcgan" (FD 22-23 against 50-54 at 2 epochs, 2 seeds); on MNIST with the
    # MLP nets it collapses at this gamma (FD 681 against improved-r1's 172 at 20 epochs, seed 0): not for the MLP.
    "rpgan-r1r2": RecipeSpec("R3GAN's objective: RpGAN + R1 + R2 (gamma 0.05, every D update), Adam betas "
                             "(0, 0.99), generator EMA 0.999 with 500 warm-up updates",
                             loss="rpgan", betas=(0.0, 0.99), r1_gamma=0.05, r1_every=1, r2_gamma=0.05,
                             ema_decay=0.999, ema_warmup=500),
    # The DCGAN paper's optimiser (Radford et al. 2016: Adam, lr 2e-4, beta1 0.5), nothing else: the training
    # CLI's default for a folder of images or a colour set (the reference recipe stays MNIST's).
    "dcgan": RecipeSpec("the DCGAN paper's Adam: 2e-4, betas (0.5, 0.999), real label 1; the default for images "
                        "other than MNIST", betas=(0.5, 0.999)),
}

#: Recipe name -> one-line description (for ``--help``).
RECIPES: dict[str, str] = {name: spec.description for name, spec in SPECS.items()}


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

    def step_config(self, **more: Any) -> StepConfig:
        """The recipe's step options as a :class:`~torchgan_lite.StepConfig`; ``more`` adds the run's own
        (``amp``, ``nonfinite``, ``implementation``)."""
        return StepConfig(n_critic=self.n_critic, regularizers=tuple(self.regularizers), augment=self.augment,
                          **more)


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
        return losses.WassersteinLoss(), [penalties.GradientPenalty(weight=10.0)], 5
    table: dict[str, Callable[[], losses.GANLoss]] = {
        "nonsaturating": lambda: losses.NonSaturatingLoss(real_label=real_label),
        "minimax": losses.MinimaxLoss, "lsgan": losses.LeastSquaresLoss, "hinge": losses.HingeLoss,
        "rpgan": losses.RelativisticPairingLoss}
    return table[name](), [], 1


def _adam(module: nn.Module, lr: float, betas: tuple[float, float]) -> torch.optim.Adam:
    # fused: one kernel per parameter group, as the trainer's default optimizer (the reference recipe's).
    return torch.optim.Adam(module.parameters(), lr=lr, betas=betas, fused=True)


def build_parts(recipe: str | RecipeSpec, generator: nn.Module, discriminator: nn.Module, *,
                loss: str | None = None, lr: float | None = None, n_critic: int | None = None,
                steps_per_epoch: int | None = None, batch_size: int = 128) -> TrainingParts:
    """Build a named recipe's training parts for ``generator`` and ``discriminator``.

    Args:
        recipe: A name in :data:`RECIPES`, or a :class:`RecipeSpec` (e.g. an ablation).
        generator: The generator (its parameters go to ``g_optimizer``).
        discriminator: The discriminator (its parameters go to ``d_optimizer``).
        loss: A name in :data:`LOSSES`. None: the recipe's (``RecipeSpec.loss``, else "nonsaturating");
            a recipe that names its loss refuses another one (use a :class:`RecipeSpec` to change it).
        lr: Adam's learning rate of both networks. None: the recipe's (2e-4).
        n_critic: Discriminator updates per generator update. None: the loss's default (5 for wgan-gp, else 1).
        steps_per_epoch: Steps in one epoch, for recipes whose schedules count epochs. None: unknown.
        batch_size: Images a step (the global batch under data parallelism), for the parts that
            count images: an EMA by half-life, ADA's speed.

    Returns:
        The parts; the callbacks are not attached yet. A recipe with spectral norm changes
        ``discriminator`` in place (:func:`~torchgan_lite.nets.spectral.apply_spectral_norm`).
    """
    if isinstance(recipe, RecipeSpec):
        spec = recipe
    elif recipe in SPECS:
        spec = SPECS[recipe]
    else:
        raise ValueError(f"recipe must be one of {tuple(SPECS)} or a RecipeSpec, got {recipe!r}")
    for name, module in (("generator", generator), ("discriminator", discriminator)):
        if not isinstance(module, nn.Module):
            raise TypeError(f"{name} must be a torch.nn.Module, got {type(module).__name__}")
    if lr is not None:
        check_float("lr", lr, 0.0, low_open=True)
    if n_critic is not None:
        check_int("n_critic", n_critic)
    if steps_per_epoch is not None:
        check_int("steps_per_epoch", steps_per_epoch)
    batch_size = check_int("batch_size", batch_size)
    lr = 2e-4 if lr is None else float(lr)

    if loss is not None and spec.loss is not None and loss != spec.loss:
        raise ValueError(f"loss={loss!r}, but this recipe trains with loss {spec.loss!r}: leave loss unset, or "
                         f"build a RecipeSpec with dataclasses.replace(spec, loss={loss!r})")
    loss = loss if loss is not None else spec.loss if spec.loss is not None else "nonsaturating"
    gan_loss, regularizers, default_n_critic = make_loss(loss, real_label=spec.real_label)
    if spec.spectral_norm:  # before the optimizer is built: it changes D's parameters
        apply_spectral_norm(discriminator)
    d_lr, d_betas = spec.d_lr or lr, spec.betas
    for gamma, penalty in ((spec.r1_gamma, penalties.R1Penalty), (spec.r2_gamma, penalties.R2Penalty)):
        if gamma > 0:
            regularizers.append(LazyRegularizer(penalty(gamma), every=spec.r1_every)
                                if spec.r1_every > 1 else penalty(gamma))
    if spec.r1_every > 1 and (spec.r1_gamma > 0 or spec.r2_gamma > 0):
        d_lr, d_betas = lazy_adam_hparams(d_lr, d_betas, spec.r1_every)
    if spec.lecam_weight > 0:
        regularizers.append(LeCamRegularizer(spec.lecam_weight))

    callbacks: list[Any] = []
    augment = None
    if spec.augment_policy is not None:
        in_shape = tuple(getattr(discriminator, "in_shape", ()))
        augment = DiffAugment(spec.augment_policy, p=1.0 if spec.ada_target is None else 0.0,
                              image_shape=in_shape if len(in_shape) == 3 else None)
        if spec.ada_target is not None:
            callbacks.append(AdaptiveAugment(augment, target=spec.ada_target, batch_size=batch_size))
    if spec.ema_decay is not None:
        callbacks.append(GeneratorEMA(decay=spec.ema_decay, warmup_steps=spec.ema_warmup))
    elif spec.ema_half_life_images is not None:
        callbacks.append(GeneratorEMA.from_half_life(spec.ema_half_life_images, batch_size, rampup=spec.ema_rampup))
    return TrainingParts(gan_loss, regularizers, _adam(generator, spec.g_lr or lr, spec.betas),
                         _adam(discriminator, d_lr, d_betas), n_critic or default_n_critic,
                         augment=augment, callbacks=callbacks)
