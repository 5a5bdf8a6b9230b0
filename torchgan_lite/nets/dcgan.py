"""DCGAN builders: convolutional generator and discriminator for 28x28 (MNIST) and 32 to 256 px images.

After Radford et al. 2016 ("Unsupervised Representation Learning with Deep
Convolutional GANs") and the PyTorch DCGAN tutorial: strided transposed
convolutions up, strided convolutions down, no pooling, ReLU in G and
LeakyReLU(0.2) in D, Tanh output, weights drawn from N(0, 0.02).

Layout (``w = base_width``), generator:

- 28x28 (MNIST): ``z -> ConvT(k7) 2w@7x7 -> ConvT(k4,s2) w@14x14 -> ConvT(k4,s2) C@28x28``
- 32x32: ``z -> ConvT(k4) 4w@4x4 -> 2w@8x8 -> w@16x16 -> C@32x32``
- 64x64: ``z -> ConvT(k4) 8w@4x4 -> 4w@8x8 -> 2w@16x16 -> w@32x32 -> C@64x64`` (the tutorial's net)
- 128x128: ``z -> ConvT(k4) 8w@4x4 -> 8w@8x8 -> 4w@16x16 -> 2w@32x32 -> w@64x64 -> C@128x128``
- 256x256: ``z -> 8w@4x4 -> 8w@8x8 -> 8w@16x16 -> 4w@32x32 -> 2w@64x64 -> w@128x128 -> C@256x256``

that is, every stride-2 stage halves the width going up from ``w`` at the last hidden layer,
as in the paper, but no layer is wider than ``8w`` (:data:`MAX_WIDTH_MULTIPLIER`; the 64-px
net's widest layer, 512 channels at the tutorial's ``w = 64``): the extra stages of the
larger sizes add 4x4 -> 8x8 (-> 16x16) layers at ``8w`` instead of 16w and 32w layers, which
would hold 4x and 16x the weights for no reported gain. The discriminator mirrors it
(``Conv(k4,s2)`` from ``w`` down to 7x7 or 4x4, capped at ``8w`` likewise, then one
``Linear`` to the logit, ``(B,)``).

``norm`` picks the normaliser of the hidden layers: ``"batch"`` (BatchNorm2d; the
paper's choice; not on D's first layer), ``"spectral"`` (spectral normalisation of every
weight, label embeddings included, Miyato et al. 2018; the usual choice with R1 or hinge
losses) or ``None``. Spectral norm is :func:`~torchgan_lite.nets.spectral.apply_spectral_norm`
with ``method="parametrization"`` (torch's, on every layer): the head's Linear is a
negligible share of a conv net's cost, and this keeps the ``state_dict`` keys of the
checkpoints written before (``*.parametrizations.weight.original``), so they still resume.

With ``num_classes`` both become class-conditional, like
:mod:`torchgan_lite.nets.conditional`: the generator concatenates a label embedding to
the noise, the discriminator adds a projection term ``<embed(y), h>`` on its
flattened features; they then take ``(z, y)`` / ``(x, y)`` with int64 labels ``(B,)``.

Both builders are registered (:mod:`torchgan_lite.nets.registry`): the modules record how
they were built in ``module.config``, which checkpoints save.
"""

from __future__ import annotations

import itertools
from typing import Literal

import torch
from torch import nn

from torchgan_lite.nets.conditional import check_labels
from torchgan_lite.nets.mlp import _check_slope
from torchgan_lite.nets.registry import register_builder
from torchgan_lite.nets.spectral import apply_spectral_norm
from torchgan_lite.utils.checks import check_int

__all__ = ["IMAGE_SIZES", "MAX_WIDTH_MULTIPLIER", "DCGANDiscriminator", "DCGANGenerator", "Norm",
           "dcgan_discriminator", "dcgan_generator"]

Norm = Literal["batch", "spectral"] | None
#: Supported image sizes, and the spatial size the networks start from / end at.
IMAGE_SIZES: dict[int, int] = {28: 7, 32: 4, 64: 4, 128: 4, 256: 4}
#: No layer is wider than this many times ``base_width`` (the 64x64 net's widest layer).
MAX_WIDTH_MULTIPLIER = 8
_NORMS = ("batch", "spectral", None)


def _check_common(image_size: object, channels: object, base_width: object, norm: object) -> None:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size not in IMAGE_SIZES:
        raise ValueError(f"image_size must be one of {sorted(IMAGE_SIZES)} (28 for MNIST, or a power of two from "
                         f"32 to 256), got {image_size!r}")
    check_int("channels", channels)
    check_int("base_width", base_width)
    if norm not in _NORMS:
        raise ValueError(f"norm must be 'batch', 'spectral' or None, got {norm!r}")


def _num_up(image_size: int) -> int:
    """Stride-2 stages between the start size and the image size (28: 7->14->28, 2)."""
    start, n = IMAGE_SIZES[image_size], 0
    while start << n < image_size:
        n += 1
    return n


def _widths(image_size: int, base_width: int) -> list[int]:
    """The discriminator's widths, stage by stage (the generator's, reversed): ``w, 2w, 4w, 8w, 8w, ...``."""
    return [base_width * min(2**i, MAX_WIDTH_MULTIPLIER) for i in range(_num_up(image_size))]


def _init_weights(module: nn.Module) -> None:
    """The DCGAN initialisation: conv/linear weights ~ N(0, 0.02), batch-norm scale ~ N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def _apply_spectral_norm(module: nn.Module) -> None:
    """Spectral-normalise the weight of every conv, linear and embedding layer (after initialisation)."""
    apply_spectral_norm(module, method="parametrization", embeddings=True)


def _check_label_argument(who: str, conditional_call: str, plain_call: str, num_classes: int | None,
                          y: object, batch: int) -> None:
    """A conditional network takes int64 labels ``(B,)``; an unconditional one takes none."""
    if num_classes is not None:
        if y is None:
            raise TypeError(f"this {who} is conditional (num_classes={num_classes}): call it as {conditional_call}")
        check_labels(y, batch, num_classes, "y")
    elif y is not None:
        raise TypeError(f"this {who} is not conditional (num_classes=None): call it as {plain_call}")


class DCGANGenerator(nn.Module):
    """Noise ``(B, latent_dim)`` (and labels ``(B,)`` if conditional) -> images ``(B, C, S, S)`` in [-1, 1]."""

    def __init__(self, latent_dim: int, image_size: int, channels: int, base_width: int, norm: Norm,
                 num_classes: int | None, embed_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.out_shape = (channels, image_size, image_size)
        self.embed = nn.Embedding(num_classes, embed_dim) if num_classes is not None else None
        widths = _widths(image_size, base_width)[::-1]  # e.g. 28: [2w, w]; 128: [8w, 8w, 4w, 2w, w]
        bias = norm != "batch"  # a bias before batch norm is cancelled by its mean
        in_dim = latent_dim + (embed_dim if num_classes is not None else 0)
        layers: list[nn.Module] = [nn.ConvTranspose2d(in_dim, widths[0], IMAGE_SIZES[image_size], 1, 0, bias=bias)]
        if norm == "batch":
            layers.append(nn.BatchNorm2d(widths[0]))
        layers.append(nn.ReLU())
        for w_in, w_out in itertools.pairwise(widths):
            layers.append(nn.ConvTranspose2d(w_in, w_out, 4, 2, 1, bias=bias))
            if norm == "batch":
                layers.append(nn.BatchNorm2d(w_out))
            layers.append(nn.ReLU())
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        _init_weights(self)
        if norm == "spectral":
            _apply_spectral_norm(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if not torch.jit.is_scripting():  # the input checks are Python's; TorchScript compiles the rest
            if z.dim() != 2 or z.shape[1] != self.latent_dim:
                raise ValueError(f"z must have shape (B, {self.latent_dim}), got {tuple(z.shape)}")
            _check_label_argument("generator", "G(z, y)", "G(z)", self.num_classes, y, z.shape[0])
        if self.embed is not None and y is not None:
            z = torch.cat([z, self.embed(y).to(z.dtype)], dim=1)  # (B, latent_dim + embed_dim)
        return self.net(z[:, :, None, None])  # (B, C, S, S)


class DCGANDiscriminator(nn.Module):
    """Images ``(B, C, S, S)`` (and labels ``(B,)`` if conditional) -> logits ``(B,)``."""

    def __init__(self, image_size: int, channels: int, base_width: int, norm: Norm, negative_slope: float,
                 num_classes: int | None) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_shape = (channels, image_size, image_size)
        # Each logit depends on its own sample only; the step may score real and fake in one call
        # (training.step.scores_in_one_call, which still checks for batch and spectral norm).
        self.independent_samples = True
        widths = _widths(image_size, base_width)  # e.g. 28: [w, 2w]; 128: [w, 2w, 4w, 8w, 8w]
        layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 4, 2, 1), nn.LeakyReLU(negative_slope)]
        for w_in, w_out in itertools.pairwise(widths):
            layers.append(nn.Conv2d(w_in, w_out, 4, 2, 1, bias=norm != "batch"))
            if norm == "batch":
                layers.append(nn.BatchNorm2d(w_out))
            layers.append(nn.LeakyReLU(negative_slope))
        self.trunk = nn.Sequential(*layers)
        features = widths[-1] * IMAGE_SIZES[image_size] ** 2
        self.head = nn.Linear(features, 1)
        self.embed = nn.Embedding(num_classes, features) if num_classes is not None else None
        _init_weights(self)
        if self.embed is not None:
            nn.init.normal_(self.embed.weight, 0.0, 0.02)
        if norm == "spectral":
            _apply_spectral_norm(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if not torch.jit.is_scripting():  # the input checks are Python's; TorchScript compiles the rest
            if tuple(x.shape[1:]) != self.in_shape or x.dim() != 4:
                raise ValueError(f"x must have shape (B, {', '.join(map(str, self.in_shape))}), "
                                 f"got {tuple(x.shape)}")
            _check_label_argument("discriminator", "D(x, y)", "D(x)", self.num_classes, y, x.shape[0])
        h = self.trunk(x).flatten(1)  # (B, F)
        logit = self.head(h).squeeze(1)  # (B,)
        if self.embed is not None and y is not None:
            logit = logit + (self.embed(y).to(h.dtype) * h).sum(dim=1)  # projection term, (B,)
        return logit


@register_builder("dcgan_generator")
def dcgan_generator(
    latent_dim: int = 100,
    image_size: int = 28,
    channels: int = 1,
    base_width: int = 64,
    norm: Norm = "batch",
    num_classes: int | None = None,
    embed_dim: int | None = None,
) -> DCGANGenerator:
    """A DCGAN generator for ``image_size`` x ``image_size`` images.

    Args:
        latent_dim: Size of the noise vector.
        image_size: 28, 32, 64, 128 or 256.
        channels: Image channels (1 for MNIST, 3 for colour).
        base_width: Channels of the last hidden layer; earlier layers double it, up to ``8 * base_width``.
        norm: ``"batch"``, ``"spectral"`` or None (see the module docstring).
        num_classes: None: unconditional, ``G(z)``. An int: class-conditional, ``G(z, y)``.
        embed_dim: Conditional only: size of the label embedding; None: ``num_classes``.

    Returns:
        A module mapping ``(B, latent_dim)`` to ``(B, channels, image_size, image_size)`` in
        [-1, 1]; it carries ``latent_dim``, ``num_classes`` and ``out_shape``.
    """
    _check_common(image_size, channels, base_width, norm)
    latent_dim = check_int("latent_dim", latent_dim)
    if num_classes is not None:
        num_classes = check_int("num_classes", num_classes)
    elif embed_dim is not None:
        raise ValueError(f"embed_dim={embed_dim} needs num_classes (a conditional generator)")
    embed = (num_classes or 0) if embed_dim is None else check_int("embed_dim", embed_dim)
    return DCGANGenerator(latent_dim, image_size, channels, base_width, norm, num_classes, embed)


@register_builder("dcgan_discriminator")
def dcgan_discriminator(
    image_size: int = 28,
    channels: int = 1,
    base_width: int = 64,
    norm: Norm = "batch",
    negative_slope: float = 0.2,
    num_classes: int | None = None,
) -> DCGANDiscriminator:
    """A DCGAN discriminator for ``image_size`` x ``image_size`` images.

    Args:
        image_size: 28, 32, 64, 128 or 256.
        channels: Image channels.
        base_width: Channels of the first layer; later layers double it, up to ``8 * base_width``.
        norm: ``"batch"``, ``"spectral"`` or None (see the module docstring).
        negative_slope: LeakyReLU slope.
        num_classes: None: unconditional, ``D(x)``. An int: projection discriminator, ``D(x, y)``.

    Returns:
        A module mapping ``(B, channels, image_size, image_size)`` to logits ``(B,)``;
        it carries ``num_classes`` and ``in_shape``.
    """
    _check_common(image_size, channels, base_width, norm)
    if num_classes is not None:
        num_classes = check_int("num_classes", num_classes)
    return DCGANDiscriminator(image_size, channels, base_width, norm, _check_slope(negative_slope), num_classes)
