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

from .utils import check_int

__all__ = ["truncated_noise"]


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
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or math.isnan(threshold) \
            or not threshold > 0:
        raise ValueError(f"threshold must be a number > 0 (math.inf: no truncation), got {threshold!r}")
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
