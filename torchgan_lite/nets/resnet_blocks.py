"""Residual blocks of the SNGAN/BigGAN ResNets, and class-conditional batch norm.

The pieces :mod:`torchgan_lite.nets.resnet` stacks (Gulrajani et al. 2017, "Improved
Training of Wasserstein GANs", appendix F; Miyato et al. 2018, "Spectral Normalization
for GANs", appendix B.4; Brock et al. 2019, "BigGAN"):

- :class:`ConditionalBatchNorm2d`: batch norm whose per-channel gain and bias are looked
  up per sample from the class label (Dumoulin et al. 2017; Miyato & Koyama 2018, the
  "categorical conditional batch norm" of the projection-discriminator paper): two
  ``nn.Embedding(num_classes, C)`` tables initialised to 1 and 0, so a fresh network
  starts as the unconditional one. With ``num_classes=None`` it is a plain affine
  ``BatchNorm2d``.
- :class:`ResidualUpBlock` (generator): ``BN-ReLU-up2-Conv3x3-BN-ReLU-Conv3x3`` plus a
  shortcut ``up2-Conv1x1``; nearest-neighbour up-sampling, (B, C_in, H, W) -> (B, C_out, 2H, 2W).
- :class:`ResidualDownBlock` (discriminator): ``ReLU-Conv3x3-ReLU-Conv3x3-avgpool2`` plus a
  shortcut ``Conv1x1-avgpool2`` (a plain identity when neither the width nor the size
  changes). With ``preactivation=False`` it is the "optimized" first block of SNGAN's
  discriminator: no ReLU before the first convolution (it would clip the image), and the
  shortcut pools before its 1x1 convolution (cheaper, the same function class).

The convolutions are initialised as SNGAN's (Chainer and Mimicry code): Xavier-uniform
with gain sqrt(2) in the residual branch, gain 1 in the shortcut, biases 0. The blocks
hold no spectral norm themselves: the networks apply it to every layer at once
(:func:`~torchgan_lite.nets.spectral.apply_spectral_norm`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from torchgan_lite.utils.checks import check_bool, check_int

__all__ = ["ConditionalBatchNorm2d", "ResidualDownBlock", "ResidualUpBlock"]


def _init_conv(conv: nn.Conv2d, gain: float) -> None:
    nn.init.xavier_uniform_(conv.weight, gain)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


class ConditionalBatchNorm2d(nn.Module):
    """``BatchNorm2d`` with a per-class gain and bias: ``gain[y] * BN(x) + bias[y]``.

    Args:
        num_features: Channels ``C`` of the input ``(B, C, H, W)``.
        num_classes: None: an ordinary affine ``BatchNorm2d`` (called without labels). An
            int ``K``: the gain and bias are rows of ``nn.Embedding(K, C)`` tables
            ``gain`` (initialised to 1) and ``bias`` (initialised to 0), picked by the labels.
        eps: Batch norm's epsilon.
        momentum: Batch norm's running-statistics momentum.

    Shapes: ``x`` ``(B, C, H, W)``, ``y`` int64 ``(B,)`` -> ``(B, C, H, W)``.
    """

    def __init__(self, num_features: int, num_classes: int | None = None, eps: float = 1e-5,
                 momentum: float = 0.1) -> None:
        super().__init__()
        num_features = check_int("num_features", num_features)
        if num_classes is not None:
            num_classes = check_int("num_classes", num_classes)
        self.num_features = num_features
        self.num_classes = num_classes
        self.bn = nn.BatchNorm2d(num_features, eps=eps, momentum=momentum, affine=num_classes is None)
        self.gain: nn.Embedding | None = None
        self.bias: nn.Embedding | None = None
        if num_classes is not None:
            self.gain = nn.Embedding(num_classes, num_features)
            self.bias = nn.Embedding(num_classes, num_features)
            nn.init.ones_(self.gain.weight)
            nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.bn(x)  # (B, C, H, W)
        if self.gain is not None and self.bias is not None:  # TorchScript resolves this when it compiles
            if y is None:
                raise ValueError("this ConditionalBatchNorm2d is class-conditional: call it with labels y (B,)")
            gain, bias = self.gain(y).to(h.dtype), self.bias(y).to(h.dtype)  # (B, C) each
            h = h * gain[:, :, None, None] + bias[:, :, None, None]
        return h

    def extra_repr(self) -> str:
        return f"{self.num_features}, num_classes={self.num_classes}"


class ResidualUpBlock(nn.Module):
    """The generator's block: ``(B, C_in, H, W)`` (and labels ``(B,)``) -> ``(B, C_out, 2H, 2W)``.

    Residual branch ``BN-ReLU-up2-Conv3x3-BN-ReLU-Conv3x3``, shortcut ``up2-Conv1x1``; both
    batch norms are :class:`ConditionalBatchNorm2d`, class-conditional when ``num_classes``
    is given.

    Args:
        in_channels: Input channels.
        out_channels: Output channels (and of the hidden layer).
        num_classes: None, or the number of classes of the conditional batch norms.
    """

    def __init__(self, in_channels: int, out_channels: int, num_classes: int | None = None) -> None:
        super().__init__()
        in_channels = check_int("in_channels", in_channels)
        out_channels = check_int("out_channels", out_channels)
        self.bn1 = ConditionalBatchNorm2d(in_channels, num_classes)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False)  # batch norm follows: no bias
        self.bn2 = ConditionalBatchNorm2d(out_channels, num_classes)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, 1, 0)
        _init_conv(self.conv1, math.sqrt(2))
        _init_conv(self.conv2, math.sqrt(2))
        _init_conv(self.shortcut, 1.0)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = F.relu(self.bn1(x, y))  # (B, C_in, H, W)
        h = self.conv1(F.interpolate(h, scale_factor=2.0, mode="nearest"))  # (B, C_out, 2H, 2W)
        h = self.conv2(F.relu(self.bn2(h, y)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2.0, mode="nearest"))  # (B, C_out, 2H, 2W)


class ResidualDownBlock(nn.Module):
    """The discriminator's block: ``(B, C_in, H, W)`` -> ``(B, C_out, H/2, W/2)`` (or ``(B, C_out, H, W)``).

    Residual branch ``[ReLU-]Conv3x3-ReLU-Conv3x3[-avgpool2]``; shortcut ``Conv1x1[-avgpool2]``
    when the width or the size changes, else the identity.

    Args:
        in_channels: Input channels.
        out_channels: Output channels (and of the hidden layer, BigGAN's "wide" blocks).
        downsample: Halve the height and width (2x2 average pooling).
        preactivation: False for the first block, whose input is the image: no ReLU before
            the first convolution, and the shortcut pools before its 1x1 convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, downsample: bool = True,
                 preactivation: bool = True) -> None:
        super().__init__()
        in_channels = check_int("in_channels", in_channels)
        out_channels = check_int("out_channels", out_channels)
        self.downsample = check_bool("downsample", downsample)
        self.preactivation = check_bool("preactivation", preactivation)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        self.shortcut: nn.Conv2d | None = None
        if in_channels != out_channels or downsample or not preactivation:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, 1, 0)
            _init_conv(self.shortcut, 1.0)
        _init_conv(self.conv1, math.sqrt(2))
        _init_conv(self.conv2, math.sqrt(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(x) if self.preactivation else x  # (B, C_in, H, W)
        h = self.conv2(F.relu(self.conv1(h)))  # (B, C_out, H, W)
        if self.downsample:
            h = F.avg_pool2d(h, 2)  # (B, C_out, H/2, W/2)
        s = x
        shortcut = self.shortcut
        if shortcut is not None:
            if self.preactivation:
                s = shortcut(s)
                if self.downsample:
                    s = F.avg_pool2d(s, 2)
            else:  # the first block: pool the image, then the 1x1 convolution (fewer pixels to convolve)
                if self.downsample:
                    s = F.avg_pool2d(s, 2)
                s = shortcut(s)
        return h + s
