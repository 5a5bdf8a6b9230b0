"""ResNet builders: the SNGAN/BigGAN residual generator and discriminator for 32, 64 and 128 px images.

After Miyato et al. 2018 ("Spectral Normalization for GANs", the CIFAR-10 and ImageNet
ResNets of appendix B.4), itself after Gulrajani et al. 2017 (WGAN-GP's CIFAR ResNet),
with the width schedules of Brock et al. 2019 (BigGAN) at 64 and 128 px. The blocks are
in :mod:`torchgan_lite.nets.resnet_blocks`. With ``w = base_width``:

Generator: ``z -> Linear -> (4x4, c0)``, one
:class:`~torchgan_lite.nets.resnet_blocks.ResidualUpBlock` per doubling
(``BN-ReLU-up2-Conv3x3-BN-ReLU-Conv3x3`` + ``up2-Conv1x1`` shortcut), then
``BN-ReLU-Conv3x3-Tanh`` to the image. Widths ``c0 -> c1 -> ...``:

- 32x32: ``4w@4 -> 4w@8 -> 4w@16 -> 4w@32`` (SNGAN's CIFAR generator: 256 at ``w = 64``)
- 64x64: ``16w@4 -> 16w@8 -> 8w@16 -> 4w@32 -> 2w@64``
- 128x128: ``16w@4 -> 16w@8 -> 8w@16 -> 4w@32 -> 2w@64 -> w@128`` (SNGAN's ImageNet generator)

Discriminator: an "optimized" first
:class:`~torchgan_lite.nets.resnet_blocks.ResidualDownBlock`, then residual down
blocks, ``ReLU``, a global *sum* pool over height and width (features ``h`` ``(B, F)``) and
one ``Linear`` to the logit ``(B,)``; spectral norm on every weight (by default):

- 32x32: ``2w@16 -> 2w@8 -> 2w@8 -> 2w@8`` (SNGAN's CIFAR discriminator: 128 at ``w = 64``)
- 64x64: ``w@32 -> 2w@16 -> 4w@8 -> 8w@4 -> 16w@4``
- 128x128: ``w@64 -> 2w@32 -> 4w@16 -> 8w@8 -> 16w@4 -> 16w@4`` (SNGAN's ImageNet discriminator)

With ``num_classes=K`` both are class-conditional (Miyato & Koyama 2018, "cGANs with
Projection Discriminator"): every batch norm of the generator's blocks is a
:class:`~torchgan_lite.nets.resnet_blocks.ConditionalBatchNorm2d` (per-class gain and bias, initialised to 1 and 0; the
last batch norm stays unconditional, as in their code), and the discriminator adds the
projection term ``<embed(y), h>`` to the logit, its ``nn.Embedding(K, F)`` spectral-normalised
too. They then take ``(z, y)`` / ``(x, y)`` with int64 labels ``(B,)``.

Spectral norm is :func:`~torchgan_lite.nets.spectral.apply_spectral_norm` (``method="auto"``:
torch's parametrization on the convolutions and the embedding, the output rescaling on the
Linear head, so ``head.weight`` stays the raw weight). Weights are initialised as SNGAN's:
Xavier-uniform (gain sqrt(2) inside the residual branches, 1 elsewhere), biases 0.

Both builders are registered (:mod:`torchgan_lite.nets.registry`): the modules record how
they were built in ``module.config``, which checkpoints save.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from torchgan_lite.nets.dcgan import _check_label_argument
from torchgan_lite.nets.registry import register_builder
from torchgan_lite.nets.resnet_blocks import ResidualDownBlock, ResidualUpBlock
from torchgan_lite.nets.spectral import apply_spectral_norm
from torchgan_lite.utils.checks import check_bool, check_int

__all__ = ["RESNET_IMAGE_SIZES", "ResNetDiscriminator", "ResNetGenerator", "resnet_discriminator",
           "resnet_generator"]

#: The image sizes the ResNet builders make.
RESNET_IMAGE_SIZES: tuple[int, ...] = (32, 64, 128)
_START = 4  # the generator's first feature map is 4x4
# Width multipliers of base_width. Generator: the Linear's output, then each up block's.
_G_WIDTHS: dict[int, tuple[int, ...]] = {32: (4, 4, 4, 4), 64: (16, 16, 8, 4, 2), 128: (16, 16, 8, 4, 2, 1)}
# Discriminator: (width, halves the size) of each block, the optimized first block first.
_D_BLOCKS: dict[int, tuple[tuple[int, bool], ...]] = {
    32: ((2, True), (2, True), (2, False), (2, False)),
    64: ((1, True), (2, True), (4, True), (8, True), (16, False)),
    128: ((1, True), (2, True), (4, True), (8, True), (16, True), (16, False)),
}


def _check_common(image_size: object, channels: object, base_width: object, num_classes: object) -> int | None:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size not in RESNET_IMAGE_SIZES:
        raise ValueError(f"image_size must be one of {list(RESNET_IMAGE_SIZES)}, got {image_size!r}")
    check_int("channels", channels)
    check_int("base_width", base_width)
    return None if num_classes is None else check_int("num_classes", num_classes)


class ResNetGenerator(nn.Module):
    """Noise ``(B, latent_dim)`` (and labels ``(B,)`` if conditional) -> images ``(B, C, S, S)`` in [-1, 1]."""

    def __init__(self, latent_dim: int, image_size: int, channels: int, base_width: int, num_classes: int | None,
                 spectral_norm: bool) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.out_shape = (channels, image_size, image_size)
        widths = [base_width * m for m in _G_WIDTHS[image_size]]
        self.start_width, self.start_size = widths[0], _START
        self.linear = nn.Linear(latent_dim, _START * _START * widths[0])
        self.blocks = nn.ModuleList(ResidualUpBlock(w_in, w_out, num_classes)
                                    for w_in, w_out in itertools.pairwise(widths))
        self.bn = nn.BatchNorm2d(widths[-1])
        self.conv = nn.Conv2d(widths[-1], channels, 3, 1, 1)
        nn.init.xavier_uniform_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        nn.init.xavier_uniform_(self.conv.weight)
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)
        if spectral_norm:  # the class gains and biases are no operators: their tables are left as they are
            apply_spectral_norm(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if not torch.jit.is_scripting():  # the input checks are Python's; TorchScript compiles the rest
            if z.dim() != 2 or z.shape[1] != self.latent_dim:
                raise ValueError(f"z must have shape (B, {self.latent_dim}), got {tuple(z.shape)}")
            _check_label_argument("generator", "G(z, y)", "G(z)", self.num_classes, y, z.shape[0])
        h = self.linear(z).view(z.shape[0], self.start_width, self.start_size, self.start_size)  # (B, c0, 4, 4)
        for block in self.blocks:
            h = block(h, y)  # (B, c_i, 2^i 4, 2^i 4)
        return torch.tanh(self.conv(F.relu(self.bn(h))))  # (B, C, S, S)


class ResNetDiscriminator(nn.Module):
    """Images ``(B, C, S, S)`` (and labels ``(B,)`` if conditional) -> logits ``(B,)``."""

    def __init__(self, image_size: int, channels: int, base_width: int, num_classes: int | None,
                 spectral_norm: bool) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_shape = (channels, image_size, image_size)
        # Each logit depends on its own sample only; the step may score real and fake in one call
        # (training.step.scores_in_one_call, which still checks for batch and spectral norm).
        self.independent_samples = True
        blocks, w_in = [], channels
        for i, (multiplier, down) in enumerate(_D_BLOCKS[image_size]):
            blocks.append(ResidualDownBlock(w_in, base_width * multiplier, downsample=down, preactivation=i > 0))
            w_in = base_width * multiplier
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(w_in, 1)
        self.embed = nn.Embedding(num_classes, w_in) if num_classes is not None else None
        nn.init.xavier_uniform_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        if self.embed is not None:
            nn.init.xavier_uniform_(self.embed.weight)
        if spectral_norm:
            apply_spectral_norm(self, embeddings=True)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if not torch.jit.is_scripting():  # the input checks are Python's; TorchScript compiles the rest
            if x.dim() != 4 or tuple(x.shape[1:]) != self.in_shape:
                raise ValueError(f"x must have shape (B, {', '.join(map(str, self.in_shape))}), "
                                 f"got {tuple(x.shape)}")
            _check_label_argument("discriminator", "D(x, y)", "D(x)", self.num_classes, y, x.shape[0])
        h = torch.sum(F.relu(self.blocks(x)), dim=[2, 3])  # global sum pooling, (B, F)
        logit = self.head(h).squeeze(1)  # (B,)
        if self.embed is not None and y is not None:
            logit = logit + (self.embed(y).to(h.dtype) * h).sum(dim=1)  # projection term, (B,)
        return logit


@register_builder("resnet_generator")
def resnet_generator(
    latent_dim: int = 128,
    image_size: int = 32,
    channels: int = 3,
    base_width: int = 64,
    num_classes: int | None = None,
    spectral_norm: bool = False,
) -> ResNetGenerator:
    """A residual (SNGAN/BigGAN) generator for ``image_size`` x ``image_size`` images.

    Args:
        latent_dim: Size of the noise vector (SNGAN: 128).
        image_size: 32, 64 or 128.
        channels: Image channels.
        base_width: The width unit ``w`` of the module docstring's schedules (64: SNGAN's nets).
        num_classes: None: unconditional, ``G(z)``. An int: class-conditional batch norm, ``G(z, y)``.
        spectral_norm: Spectral norm on every Linear and Conv layer too (SAGAN, BigGAN), not on
            the class gain and bias tables.

    Returns:
        A module mapping ``(B, latent_dim)`` to ``(B, channels, image_size, image_size)`` in
        [-1, 1]; it carries ``latent_dim``, ``num_classes`` and ``out_shape``.
    """
    num_classes = _check_common(image_size, channels, base_width, num_classes)
    return ResNetGenerator(check_int("latent_dim", latent_dim), image_size, channels, base_width, num_classes,
                           check_bool("spectral_norm", spectral_norm))


@register_builder("resnet_discriminator")
def resnet_discriminator(
    image_size: int = 32,
    channels: int = 3,
    base_width: int = 64,
    num_classes: int | None = None,
    spectral_norm: bool = True,
) -> ResNetDiscriminator:
    """A residual (SNGAN/BigGAN) discriminator for ``image_size`` x ``image_size`` images.

    Args:
        image_size: 32, 64 or 128.
        channels: Image channels.
        base_width: The width unit ``w`` of the module docstring's schedules (64: SNGAN's nets).
        num_classes: None: unconditional, ``D(x)``. An int: projection discriminator, ``D(x, y)``.
        spectral_norm: Spectral norm on every weight, the projection embedding included
            (SNGAN); False for WGAN-GP's critic, which relies on the gradient penalty instead.

    Returns:
        A module mapping ``(B, channels, image_size, image_size)`` to logits ``(B,)``;
        it carries ``num_classes`` and ``in_shape``.
    """
    num_classes = _check_common(image_size, channels, base_width, num_classes)
    return ResNetDiscriminator(image_size, channels, base_width, num_classes,
                               check_bool("spectral_norm", spectral_norm))
