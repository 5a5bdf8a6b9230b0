"""Truncated noise: the truncation trick of BigGAN (Brock et al. 2019), for sampling only.

``truncated_noise(n, latent_dim, threshold)`` draws standard normal noise and
redraws every entry whose magnitude exceeds ``threshold``, so each entry follows a
standard normal truncated to ``[-threshold, threshold]``. Smaller thresholds trade
variety for fidelity; a generator is trained on untruncated noise and only sampled
with this. Randomness comes from ``generator`` if given, else torch's global RNG.

    z = truncated_noise(64, 100, threshold=1.0)        # (64, 100), every |z| <= 1
    images = generator(z)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from torchgan_lite.utils.checks import check_float, check_int

__all__ = ["sample_images", "truncated_noise"]


def truncated_noise(n: int, latent_dim: int, threshold: float, device: torch.device | str | None = None,
                    dtype: torch.dtype | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """``(n, latent_dim)`` standard normal noise with every entry resampled until ``|z| <= threshold``.

    Args:
        n: Rows (samples).
        latent_dim: Columns (the generator's noise size).
        threshold: The truncation, > 0. ``math.inf`` gives plain ``randn``.
        device: Where to make the noise (default: torch's default device).
        dtype: A floating dtype (default: torch's default dtype).
        generator: A ``torch.Generator`` to draw from (default: the global RNG).

    Returns:
        ``(n, latent_dim)`` noise, each entry in ``[-threshold, threshold]``.

    Raises:
        ValueError: ``threshold`` is not a positive number, or ``n``/``latent_dim`` < 1.
    """
    check_int("n", n)
    check_int("latent_dim", latent_dim)
    check_float("threshold", threshold, 0.0, low_open=True, allow_inf=True)  # math.inf: no truncation
    if dtype is not None and not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating dtype, got {dtype}")
    z = torch.randn(n, latent_dim, device=device, dtype=dtype, generator=generator)  # (n, latent_dim)
    if math.isinf(threshold):
        return z
    # Redraw the out-of-range entries only; at threshold t a draw is kept with probability
    # erf(t / sqrt 2) (0.68 at t = 1, 0.38 at t = 0.5), so a few rounds finish.
    outside = z.abs() > threshold
    while bool(outside.any()):
        redraw = torch.randn(int(outside.sum()), device=z.device, dtype=z.dtype, generator=generator)
        z[outside] = redraw
        outside = z.abs() > threshold
    return z


def sample_images(generator: nn.Module, n: int, seed: int | None = None, batch_size: int = 1024,
                  labels: torch.Tensor | None = None) -> torch.Tensor:
    """``n`` samples ``(n, *sample_shape)`` from ``generator``, on the CPU, without gradients.

    Args:
        generator: A module with a ``latent_dim`` attribute (and ``num_classes`` if conditional).
        n: How many samples.
        seed: Seed of the noise (its own ``torch.Generator``); None: torch's global RNG.
        batch_size: Samples per forward pass (bounds the memory).
        labels: Conditional generators only: int64 classes ``(n,)``; None cycles through
            the classes (``0, 1, ..., num_classes - 1, 0, ...``).
    """
    check_int("n", n, 1)
    latent_dim = getattr(generator, "latent_dim", None)
    if not isinstance(latent_dim, int):
        raise TypeError(f"generator must have an int latent_dim attribute, got {latent_dim!r}")
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    z = torch.randn(n, latent_dim, generator=gen)  # (n, latent_dim), drawn on the CPU for every device
    device = next(generator.parameters()).device
    num_classes = getattr(generator, "num_classes", None)
    if num_classes is None:
        if labels is not None:
            raise ValueError("labels were given but the generator is not conditional (no num_classes)")
        with torch.no_grad():
            chunks = [generator(zb.to(device)).cpu() for zb in z.split(batch_size)]
        return torch.cat(chunks)  # (n, *sample_shape)
    if labels is None:
        labels = torch.arange(n) % num_classes  # (n,)
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or tuple(labels.shape) != (n,):
        raise ValueError(f"labels must be an int64 tensor of shape ({n},), got "
                         f"{tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__}"
                         f"{' ' + str(labels.dtype) if isinstance(labels, torch.Tensor) else ''}")
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ValueError(f"labels must be in [0, {num_classes}), got values in [{int(labels.min())}, "
                         f"{int(labels.max())}]")
    with torch.no_grad():
        chunks = [generator(zb.to(device), yb.to(device)).cpu()
                  for zb, yb in zip(z.split(batch_size), labels.split(batch_size))]
    return torch.cat(chunks)  # (n, *sample_shape)
