"""Generator and discriminator builders: plain functions that return an ``nn.Module``.

With their defaults, :func:`mlp_generator` and :func:`mlp_discriminator` are exactly
the networks of the reference MNIST recipe (``docs/reference-recipe.md``):

- generator, 1,486,352 parameters:
  ``Linear(100,256) LReLU Linear(256,512) LReLU Linear(512,1024) LReLU Linear(1024,784) Tanh``
- discriminator, 1,460,225 parameters:
  ``Linear(784,1024) LReLU Drop Linear(1024,512) LReLU Drop Linear(512,256) LReLU Drop Linear(256,1)``

The discriminator returns a *logit* per sample, ``(B,)``; the recipe's final
``Sigmoid`` lives in the loss (``BCEWithLogits``), which is the same function,
numerically safer and allowed under autocast.

By default the discriminator's dropout is :class:`torchgan_lite.nets.layers.MaskDropout`:
the same function and ``state_dict`` as ``nn.Dropout``, cheaper masks on a CPU, a
different random stream. ``fast_layers=False`` builds both from ``nn.Linear``/``nn.Dropout``,
the tutorial's modules bit for bit. (The oneDNN ``Linear`` is an opt-in that relies on a
private operator: :func:`torchgan_lite.nets.layers.use_onednn_linear`.)

A generator declares ``latent_dim`` (an int attribute) so the trainer can draw
noise for it; a custom generator may declare it too, or the trainer is told. Both
declare ``num_classes = None`` (unconditional; see :mod:`torchgan_lite.nets.conditional`).
The builders are registered (:mod:`torchgan_lite.nets.registry`): each module records its
builder and arguments in ``module.config``, which checkpoints save.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from torchgan_lite.nets.layers import layer_types
from torchgan_lite.nets.registry import register_builder
from torchgan_lite.utils.checks import check_bool, check_float, check_int

__all__ = ["MLPDiscriminator", "MLPGenerator", "mlp_discriminator", "mlp_generator"]


def _check_sizes(name: str, value: object, allow_empty: bool) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a sequence of positive ints, got {value!r}")
    sizes = tuple(value)
    if not sizes and not allow_empty:
        raise ValueError(f"{name} must not be empty")
    for i, v in enumerate(sizes):
        check_int(f"{name}[{i}]", v)
    return sizes


def _check_slope(value: object) -> float:
    return check_float("negative_slope", value, 0.0)


class MLPGenerator(nn.Module):
    """Noise ``(B, latent_dim)`` -> images ``(B, *out_shape)`` in [-1, 1]."""

    def __init__(self, latent_dim: int, hidden: tuple[int, ...], out_shape: tuple[int, ...], negative_slope: float,
                 fast_layers: bool = True):
        super().__init__()
        self.latent_dim = latent_dim
        self.num_classes: int | None = None  # unconditional: called as G(z)
        self.out_shape = out_shape
        linear, _ = layer_types(fast_layers)
        layers: list[nn.Module] = []
        width = latent_dim
        for h in hidden:
            layers += [linear(width, h), nn.LeakyReLU(negative_slope)]
            width = h
        layers += [linear(width, math.prod(out_shape)), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.net(z)  # (B, prod(out_shape))
        return x.view(z.shape[0], *self.out_shape)  # (B, *out_shape)


class MLPDiscriminator(nn.Module):
    """Images ``(B, *in_shape)`` -> logits ``(B,)``."""

    def __init__(self, in_shape: tuple[int, ...], hidden: tuple[int, ...], dropout: float, negative_slope: float,
                 fast_layers: bool = True):
        super().__init__()
        self.num_classes: int | None = None  # unconditional: called as D(x)
        # Each logit depends on its own sample only; the step may score real and fake in one call
        # (training.step.scores_in_one_call, which still checks for batch and spectral norm).
        self.independent_samples = True
        self.in_shape = in_shape
        linear, dropout_layer = layer_types(fast_layers)
        layers: list[nn.Module] = []
        width = math.prod(in_shape)
        for h in hidden:
            layers += [linear(width, h), nn.LeakyReLU(negative_slope)]
            if dropout > 0:
                layers.append(dropout_layer(dropout))
            width = h
        layers.append(linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)  # (B, prod(in_shape))
        return self.net(h).squeeze(1)  # (B,)


@register_builder("mlp_generator")
def mlp_generator(
    latent_dim: int = 100,
    hidden: Sequence[int] = (256, 512, 1024),
    out_shape: Sequence[int] = (1, 28, 28),
    negative_slope: float = 0.2,
    fast_layers: bool = True,
) -> MLPGenerator:
    """The reference MLP generator (1,486,352 parameters with the defaults).

    Args:
        latent_dim: Size of the noise vector (the recipe's 100).
        hidden: Widths of the hidden layers, each followed by LeakyReLU.
        out_shape: Shape of one generated sample, e.g. ``(1, 28, 28)``.
        negative_slope: LeakyReLU slope (the recipe's 0.2).
        fast_layers: Kept for symmetry with the discriminator: the generator has no dropout,
            so both values build ``nn.Linear`` layers.

    Returns:
        A module mapping ``(B, latent_dim)`` to ``(B, *out_shape)`` in [-1, 1] (Tanh);
        it carries ``latent_dim``, ``num_classes`` (None), ``out_shape`` and ``config`` attributes.
    """
    return MLPGenerator(
        check_int("latent_dim", latent_dim),
        _check_sizes("hidden", hidden, allow_empty=True),
        _check_sizes("out_shape", out_shape, allow_empty=False),
        _check_slope(negative_slope),
        check_bool("fast_layers", fast_layers),
    )


@register_builder("mlp_discriminator")
def mlp_discriminator(
    in_shape: Sequence[int] = (1, 28, 28),
    hidden: Sequence[int] = (1024, 512, 256),
    dropout: float = 0.3,
    negative_slope: float = 0.2,
    fast_layers: bool = True,
) -> MLPDiscriminator:
    """The reference MLP discriminator (1,460,225 parameters with the defaults).

    Args:
        in_shape: Shape of one input sample, e.g. ``(1, 28, 28)``.
        hidden: Widths of the hidden layers, each followed by LeakyReLU then Dropout.
        dropout: Dropout probability after each hidden layer (the recipe's 0.3; 0 removes it).
        negative_slope: LeakyReLU slope (the recipe's 0.2).
        fast_layers: True: ``nn.Linear`` and :class:`~torchgan_lite.nets.layers.MaskDropout` (same
            function, faster on a CPU; the masks are a different random stream from
            ``nn.Dropout``'s). False: ``nn.Linear`` and ``nn.Dropout``, the tutorial's modules and
            masks bit for bit.

    Returns:
        A module mapping ``(B, *in_shape)`` to logits ``(B,)``; no sigmoid, the loss owns it.
        It carries ``num_classes`` (None), ``in_shape`` and ``config`` attributes.
    """
    check_float("dropout", dropout, 0.0, 1.0, high_open=True)
    return MLPDiscriminator(
        _check_sizes("in_shape", in_shape, allow_empty=False),
        _check_sizes("hidden", hidden, allow_empty=True),
        float(dropout),
        _check_slope(negative_slope),
        check_bool("fast_layers", fast_layers),
    )
