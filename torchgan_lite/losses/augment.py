"""Differentiable augmentation of the discriminator's inputs: DiffAugment, and ADA's adaptive probability.

A discriminator trained on few images memorises them; augmenting *every* image it sees
(the real batch and the fake batches, in the D and the G update alike) with
differentiable transforms keeps it from doing so without leaking the augmentations into
the generator (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN
Training"; Karras et al. 2020, "Training Generative Adversarial Networks with Limited
Data", ADA). The step applies ``augment(x)`` to each discriminator input
(docs/architecture.md):

    augment = DiffAugment("color,translation,cutout", p=1.0)
    trainer = GANTrainer(G, D, loss, step=StepConfig(augment=augment))
    AdaptiveAugment(augment, target=0.6).attach(trainer)   # ADA: p follows D's overfitting

The transforms are those of the authors' ``DiffAugment_pytorch.py``, per sample:

- ``color``: brightness ``x + (u - 0.5)``, saturation ``(x - mean_c) * 2u + mean_c`` (a no-op
  on one channel), contrast ``(x - mean_chw) * (u + 0.5) + mean_chw``, ``u ~ U(0, 1)``;
- ``translation``: a shift by up to 1/8 of the height and width (3 pixels at 28), zeros
  shifted in;
- ``cutout``: a square of half the height and width (14 at 28) set to 0, centred anywhere.

Each transform is applied to each sample with probability ``p`` (``p = 1``: always, as
DiffAugment; ADA moves ``p``). ``p`` is a 0-d buffer, so reading it in the forward and
adjusting it in :class:`AdaptiveAugment` need no host synchronisation; random numbers
come from torch's global RNG on the input's device, so seeded runs repeat.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed
import torch.nn.functional as F
from torch import nn

from torchgan_lite.utils.checks import check_float

__all__ = [
    "POLICIES",
    "DiffAugment",
    "rand_brightness",
    "rand_contrast",
    "rand_cutout",
    "rand_saturation",
    "rand_translation"
]


def _uniform(x: torch.Tensor) -> torch.Tensor:
    return torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device)  # (B, 1, 1, 1)


def _kept(keep: torch.Tensor | None, changed: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return changed if keep is None else torch.where(keep.view(-1, 1, 1, 1), changed, x)


def rand_brightness(x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """``x + (u - 0.5)`` per sample, ``u ~ U(0, 1)``. ``x``: ``(B, C, H, W)``.

    ``keep``: optional bool ``(B,)``; samples where it is False come back unchanged
    (here and in every transform below; the random numbers are drawn all the same).
    """
    shift = _uniform(x) - 0.5  # (B, 1, 1, 1)
    if keep is not None:
        shift = torch.where(keep.view(-1, 1, 1, 1), shift, 0.0)
    return x + shift


def rand_saturation(x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """``(x - channel mean) * 2u + channel mean`` per sample (the identity when C = 1)."""
    u = _uniform(x)  # drawn even for one channel, so that every policy draws the same numbers
    if x.shape[1] == 1:  # the channel mean is x itself: nothing to compute
        return x
    mean = x.mean(dim=1, keepdim=True)  # (B, 1, H, W)
    return _kept(keep, (x - mean) * (u * 2) + mean, x)


def rand_contrast(x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """``(x - image mean) * (u + 0.5) + image mean`` per sample."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    return _kept(keep, (x - mean) * (_uniform(x) + 0.5) + mean, x)


def rand_translation(x: torch.Tensor, ratio: float = 0.125, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Shift each sample by ``(dy, dx)``, each uniform in ``[-s, s]`` with ``s = round(ratio * size)``.

    ``out[b, :, i, j] = x[b, :, i + dy, j + dx]``, 0 where that falls outside the image.
    """
    b, c, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sy, sy + 1, size=(b, 1, 1), device=x.device)  # (B, 1, 1)
    dx = torch.randint(-sx, sx + 1, size=(b, 1, 1), device=x.device)
    if keep is not None:  # a shift by (0, 0) copies the sample
        dy, dx = dy * keep.view(-1, 1, 1), dx * keep.view(-1, 1, 1)
    # In the zero-padded image, index 0 and h + 1 are the padding: clamping sends every
    # out-of-range read there. One gather over the flattened padded image (its backward a
    # scatter-add) is several times faster on a CPU than indexing with three index tensors.
    gy = torch.clamp(torch.arange(h, device=x.device).view(1, h, 1) + dy + 1, 0, h + 1)  # (B, H, 1)
    gx = torch.clamp(torch.arange(w, device=x.device).view(1, 1, w) + dx + 1, 0, w + 1)  # (B, 1, W)
    index = (gy * (w + 2) + gx).view(b, 1, h * w).expand(b, c, h * w)  # (B, C, H*W)
    padded = F.pad(x, [1, 1, 1, 1]).reshape(b, c, (h + 2) * (w + 2))  # (B, C, (H+2)*(W+2))
    return padded.gather(2, index).view(b, c, h, w)


def rand_cutout(x: torch.Tensor, ratio: float = 0.5, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Zero a ``round(ratio * H) x round(ratio * W)`` square of each sample, at a uniform centre.

    The square covers rows ``[oy - sh // 2, oy - sh // 2 + sh)`` (clipped to the image) with
    ``oy`` uniform in ``[0, H + (1 - sh % 2))``, and likewise columns.
    """
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    oy = torch.randint(0, h + (1 - sh % 2), size=(b, 1, 1), device=x.device)  # (B, 1, 1)
    ox = torch.randint(0, w + (1 - sw % 2), size=(b, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1) - (oy - sh // 2)  # (B, H, 1): row - top
    cols = torch.arange(w, device=x.device).view(1, 1, w) - (ox - sw // 2)  # (B, 1, W): column - left
    inside = (rows >= 0) & (rows < sh) & (cols >= 0) & (cols < sw)  # (B, H, W)
    if keep is not None:
        inside = inside & keep.view(-1, 1, 1)
    return x * (~inside).to(x.dtype).unsqueeze(1)


#: Policy name -> its transforms, in order (as DiffAugment's AUGMENT_FNS).
POLICIES: dict[str, tuple[Any, ...]] = {
    "color": (rand_brightness, rand_saturation, rand_contrast),
    "translation": (rand_translation,),
    "cutout": (rand_cutout,),
}


class DiffAugment(nn.Module):
    """DiffAugment (Zhao et al. 2020) with a per-sample probability ``p``: ``x -> x``, differentiable.

    Args:
        policy: Comma-separated names from :data:`POLICIES`, applied in that order
            (the paper's choice for unconditional GANs: all three).
        p: Probability that each transform is applied to each sample, in [0, 1] (1: DiffAugment;
            :class:`AdaptiveAugment` moves it, as ADA does).
        image_shape: ``(C, H, W)`` (or ``(H, W)``) of one sample, to augment flat inputs
            ``(B, C*H*W)`` (MLP networks); images ``(B, C, H, W)`` need none.

    Attributes:
        probability: ``p`` as a 0-d float32 buffer (saved in ``state_dict``).
        last_batch_size: The batch size of the last forward (0 before any), for ADA's speed.
    """

    probability: torch.Tensor

    def __init__(self, policy: str = "color,translation,cutout", p: float = 1.0,
                 image_shape: tuple[int, ...] | None = None) -> None:
        super().__init__()
        if not isinstance(policy, str):
            raise TypeError(f"policy must be a str such as 'color,translation,cutout', got {policy!r}")
        names = [name.strip() for name in policy.split(",") if name.strip()]
        unknown = [name for name in names if name not in POLICIES]
        if unknown or not names:
            raise ValueError(f"policy must name transforms from {sorted(POLICIES)} separated by commas, got {policy!r}")
        self.policy = ",".join(names)
        self.transforms = [fn for name in names for fn in POLICIES[name]]
        if image_shape is not None:
            image_shape = tuple(image_shape)
            if len(image_shape) == 2:
                image_shape = (1, *image_shape)
            if len(image_shape) != 3 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1
                                            for s in image_shape):
                raise ValueError(f"image_shape must be (C, H, W) or (H, W) of positive ints, got {image_shape!r}")
        self.image_shape: tuple[int, int, int] | None = image_shape  # type: ignore[assignment]
        self.register_buffer("probability", torch.tensor(check_float("p", p, 0.0, 1.0), dtype=torch.float32))
        self.last_batch_size = 0

    @property
    def p(self) -> float:
        """The probability as a Python float (reading it synchronises with the device)."""
        return float(self.probability)

    @p.setter
    def p(self, value: float) -> None:
        self.probability.fill_(check_float("p", value, 0.0, 1.0))

    def extra_repr(self) -> str:
        return f"policy={self.policy!r}, image_shape={self.image_shape}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Augment ``x``: ``(B, C, H, W)``, or ``(B, C*H*W)`` given ``image_shape``; same shape out."""
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"DiffAugment needs a floating-point tensor, got "
                            f"{x.dtype if isinstance(x, torch.Tensor) else type(x).__name__}")
        flat_shape = None
        if x.dim() == 2:
            if self.image_shape is None or math.prod(self.image_shape) != x.shape[1]:
                raise ValueError(f"DiffAugment got flat inputs {tuple(x.shape)}: give image_shape=(C, H, W) with "
                                 f"C*H*W = {x.shape[1]} (got image_shape={self.image_shape})")
            flat_shape = x.shape
            x = x.view(x.shape[0], *self.image_shape)  # (B, C, H, W)
        elif x.dim() != 4:
            raise ValueError(f"DiffAugment needs (B, C, H, W) or (B, C*H*W) inputs, got shape {tuple(x.shape)}")
        self.last_batch_size = x.shape[0]
        p = self.probability.to(device=x.device, dtype=x.dtype)
        for transform in self.transforms:
            # Each transform on a random subset of the samples: draw for every sample, keep where u < p.
            keep = torch.rand(x.shape[0], device=x.device, dtype=x.dtype) < p  # (B,)
            x = transform(x, keep=keep)
        return x if flat_shape is None else x.reshape(flat_shape)
