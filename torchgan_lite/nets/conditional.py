"""Class-conditional MLP builders: a generator ``G(z, y)`` and a discriminator ``D(x, y)``.

The networks of the reference recipe, told which digit to draw (Mirza & Osindero
2014, "Conditional Generative Adversarial Nets"):

- :func:`conditional_mlp_generator`: the label goes through an ``nn.Embedding``
  ``(num_classes, embed_dim)`` and is concatenated to the noise; the rest is the
  reference MLP generator with input ``latent_dim + embed_dim``.
- :func:`conditional_mlp_discriminator`: by default a *projection* discriminator
  (Miyato & Koyama 2018, "cGANs with Projection Discriminator"): the reference MLP
  trunk maps the image to features ``h`` ``(B, H)``, and the logit is
  ``linear(h) + <embed(y), h>``, an unconditional "is it a digit" term plus a
  "is it *this* digit" term. ``projection=False`` instead concatenates a label
  embedding to the flattened image (the classic cGAN).

Both carry ``num_classes``; the generator also carries ``latent_dim``, so
:class:`~torchgan_lite.GANTrainer` recognises a conditional pair and trains it on
``(images, labels)`` batches (``TensorLoader(images, labels)``). Labels must be an
int64 tensor ``(B,)`` with one class index per sample; anything else raises a
``TypeError``/``ValueError`` that says what was given.

Both builders are registered (:mod:`torchgan_lite.nets.registry`): the modules record how
they were built in ``module.config``, which checkpoints save.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from torchgan_lite.nets.layers import layer_types
from torchgan_lite.nets.mlp import _check_sizes, _check_slope
from torchgan_lite.nets.registry import register_builder
from torchgan_lite.utils.checks import check_bool, check_float, check_int

__all__ = [
    "ConditionalMLPDiscriminator", "ConditionalMLPGenerator", "check_labels", "conditional_mlp_discriminator",
    "conditional_mlp_generator", "digit_grid_labels"
]


def check_labels(labels: object, batch: int, num_classes: int, name: str = "labels") -> torch.Tensor:
    """Check that ``labels`` is an int64 tensor ``(batch,)``; returns it.

    Only the dtype and the shape are checked (free on the host); the values are not,
    since reading them from an accelerator would cost a synchronisation per step. An
    out-of-range value fails inside ``nn.Embedding`` (on the CPU, an ``IndexError``).

    Raises:
        TypeError: not a tensor, or not int64.
        ValueError: not one label per sample.
    """
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"{name} must be an int64 tensor of class indices in [0, {num_classes}), "
                        f"got {type(labels).__name__}")
    if labels.dtype != torch.int64:
        raise TypeError(f"{name} must be int64 class indices in [0, {num_classes}), got dtype {labels.dtype} "
                        "(convert with labels.long())")
    if tuple(labels.shape) != (batch,):
        raise ValueError(f"{name} must have shape ({batch},), one class per sample, got {tuple(labels.shape)}")
    return labels


class ConditionalMLPGenerator(nn.Module):
    """Noise ``(B, latent_dim)`` and labels ``(B,)`` -> images ``(B, *out_shape)`` in [-1, 1]."""

    def __init__(self, num_classes: int, latent_dim: int, hidden: tuple[int, ...], out_shape: tuple[int, ...],
                 embed_dim: int, negative_slope: float, fast_layers: bool = True) -> None:
        super().__init__()
        linear, _ = layer_types(fast_layers)
        self.num_classes = num_classes
        self.latent_dim = latent_dim
        self.out_shape = out_shape
        self.embed = nn.Embedding(num_classes, embed_dim)
        layers: list[nn.Module] = []
        width = latent_dim + embed_dim
        for h in hidden:
            layers += [linear(width, h), nn.LeakyReLU(negative_slope)]
            width = h
        layers += [linear(width, math.prod(out_shape)), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():  # the input checks are Python's; TorchScript compiles the rest
            if z.dim() != 2 or z.shape[1] != self.latent_dim:
                raise ValueError(f"z must have shape (B, {self.latent_dim}), got {tuple(z.shape)}")
            check_labels(y, z.shape[0], self.num_classes, "y")
        h = torch.cat([z, self.embed(y).to(z.dtype)], dim=1)  # (B, latent_dim + embed_dim)
        return self.net(h).view(z.shape[0], *self.out_shape)  # (B, *out_shape)


class ConditionalMLPDiscriminator(nn.Module):
    """Images ``(B, *in_shape)`` and labels ``(B,)`` -> logits ``(B,)``."""

    def __init__(self, num_classes: int, in_shape: tuple[int, ...], hidden: tuple[int, ...], dropout: float,
                 negative_slope: float, projection: bool, embed_dim: int, fast_layers: bool = True) -> None:
        super().__init__()
        linear, dropout_layer = layer_types(fast_layers)
        self.num_classes = num_classes
        # Each logit depends on its own sample only; the step may score real and fake in one call
        # (training.step.scores_in_one_call, which still checks for batch and spectral norm).
        self.independent_samples = True
        self.in_shape = in_shape
        self.projection = projection
        width = math.prod(in_shape)
        if not projection:
            self.embed = nn.Embedding(num_classes, embed_dim)
            width += embed_dim
        layers: list[nn.Module] = []
        for h in hidden:
            layers += [linear(width, h), nn.LeakyReLU(negative_slope)]
            if dropout > 0:
                layers.append(dropout_layer(dropout))
            width = h
        self.trunk = nn.Sequential(*layers)
        self.head = linear(width, 1)
        if projection:
            # One feature-sized vector per class; the class term is <embed(y), h>.
            self.embed = nn.Embedding(num_classes, width)
            nn.init.normal_(self.embed.weight, std=1.0 / math.sqrt(width))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():  # the input checks are Python's; TorchScript compiles the rest
            if x.dim() < 1 or tuple(x.shape[1:]) != self.in_shape:
                raise ValueError(f"x must have shape (B, {', '.join(map(str, self.in_shape))}), "
                                 f"got {tuple(x.shape)}")
            check_labels(y, x.shape[0], self.num_classes, "y")
        flat = x.flatten(1)  # (B, prod(in_shape))
        if self.projection:
            h = self.trunk(flat)  # (B, H)
            return self.head(h).squeeze(1) + (self.embed(y).to(h.dtype) * h).sum(dim=1)  # (B,)
        h = self.trunk(torch.cat([flat, self.embed(y).to(flat.dtype)], dim=1))  # (B, H)
        return self.head(h).squeeze(1)  # (B,)


@register_builder("conditional_mlp_generator")
def conditional_mlp_generator(
    num_classes: int = 10,
    latent_dim: int = 100,
    hidden: Sequence[int] = (256, 512, 1024),
    out_shape: Sequence[int] = (1, 28, 28),
    embed_dim: int | None = None,
    negative_slope: float = 0.2,
    fast_layers: bool = True,
) -> ConditionalMLPGenerator:
    """The reference MLP generator, conditioned on a class label.

    Args:
        num_classes: Number of classes (10 digits).
        latent_dim: Size of the noise vector.
        hidden: Widths of the hidden layers, each followed by LeakyReLU.
        out_shape: Shape of one generated sample.
        embed_dim: Size of the label embedding concatenated to the noise; None: ``num_classes``.
        negative_slope: LeakyReLU slope.
        fast_layers: As in :func:`~torchgan_lite.nets.mlp.mlp_generator` (no dropout here: ``nn.Linear``
            either way).

    Returns:
        A module ``G(z, y)``: ``(B, latent_dim)`` noise and int64 labels ``(B,)`` to
        ``(B, *out_shape)`` in [-1, 1]; it carries ``num_classes``, ``latent_dim`` and ``out_shape``.
    """
    num_classes = check_int("num_classes", num_classes)
    embed = num_classes if embed_dim is None else check_int("embed_dim", embed_dim)
    return ConditionalMLPGenerator(
        num_classes,
        check_int("latent_dim", latent_dim),
        _check_sizes("hidden", hidden, allow_empty=True),
        _check_sizes("out_shape", out_shape, allow_empty=False),
        embed,
        _check_slope(negative_slope),
        check_bool("fast_layers", fast_layers),
    )


@register_builder("conditional_mlp_discriminator")
def conditional_mlp_discriminator(
    num_classes: int = 10,
    in_shape: Sequence[int] = (1, 28, 28),
    hidden: Sequence[int] = (1024, 512, 256),
    dropout: float = 0.3,
    negative_slope: float = 0.2,
    projection: bool = True,
    embed_dim: int | None = None,
    fast_layers: bool = True,
) -> ConditionalMLPDiscriminator:
    """The reference MLP discriminator, conditioned on a class label.

    Args:
        num_classes: Number of classes (10 digits).
        in_shape: Shape of one input sample.
        hidden: Widths of the hidden layers (LeakyReLU then Dropout after each).
        dropout: Dropout probability after each hidden layer.
        negative_slope: LeakyReLU slope.
        projection: True: projection discriminator, ``linear(h) + <embed(y), h>`` on the
            last hidden features (``hidden`` must not be empty). False: a label embedding
            concatenated to the flattened input.
        embed_dim: ``projection=False`` only: size of that embedding; None: ``num_classes``.
        fast_layers: True: ``MaskDropout`` (faster on a CPU, same function, another dropout
            random stream); False: ``nn.Dropout``. As in :func:`~torchgan_lite.nets.mlp.mlp_discriminator`.

    Returns:
        A module ``D(x, y)``: ``(B, *in_shape)`` images and int64 labels ``(B,)`` to logits
        ``(B,)``; it carries ``num_classes``.
    """
    num_classes = check_int("num_classes", num_classes)
    hidden_t = _check_sizes("hidden", hidden, allow_empty=True)
    check_float("dropout", dropout, 0.0, 1.0, high_open=True)
    check_bool("projection", projection)
    if projection and embed_dim is not None:
        raise ValueError(f"embed_dim={embed_dim} applies to projection=False only: the projection embedding "
                         "has the width of the last hidden layer")
    if projection and not hidden_t:
        raise ValueError("hidden must not be empty with projection=True: the projection needs features")
    embed = num_classes if embed_dim is None else check_int("embed_dim", embed_dim)
    return ConditionalMLPDiscriminator(
        num_classes,
        _check_sizes("in_shape", in_shape, allow_empty=False),
        hidden_t,
        float(dropout),
        _check_slope(negative_slope),
        projection,
        embed,
        check_bool("fast_layers", fast_layers),
    )


def digit_grid_labels(num_classes: int = 10, per_class: int = 10, device: torch.device | str = "cpu") -> torch.Tensor:
    """Labels ``(num_classes * per_class,)`` for a grid with one row per class: ``0 0 ... 1 1 ...``."""
    check_int("num_classes", num_classes)
    check_int("per_class", per_class)
    return torch.arange(num_classes, device=device).repeat_interleave(per_class)  # (C * P,)
