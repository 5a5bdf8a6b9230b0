"""The Fréchet distance between two Gaussians fitted to features (FID's formula), in float64, without SciPy.

``FD = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((sqrt(S1) S2 sqrt(S1))^(1/2))``

``sqrt(S1) S2 sqrt(S1)`` is symmetric positive semi-definite and has the same
eigenvalues as ``S1 S2``, so the trace term is the sum of the square roots of the
eigenvalues of a symmetric matrix: two ``eigh`` calls, no complex numbers, no
``scipy.linalg.sqrtm`` and its imaginary round-off. Eigenvalues that round-off
pushed below zero are clamped to zero.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

__all__ = ["SingularCovarianceWarning", "as_float64", "feature_statistics", "frechet_distance"]


class SingularCovarianceWarning(UserWarning):
    """A covariance was estimated from no more samples than features: it is singular and FD is unreliable."""


def as_float64(name: str, value: Any, ndim: int) -> torch.Tensor:
    """``value`` (a torch tensor or NumPy array of floats) as a float64 CPU tensor with ``ndim`` dimensions.

    Raises:
        TypeError: not a tensor/array, or not floating point.
        ValueError: wrong number of dimensions, or a NaN/inf entry.
    """
    if isinstance(value, np.ndarray):
        if not np.issubdtype(value.dtype, np.floating):
            raise TypeError(f"{name} must hold floats, got a NumPy array of {value.dtype}")
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    if value.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {tuple(value.shape)}")
    t = value.detach().to(device="cpu", dtype=torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


def feature_statistics(features: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``(D,)`` and unbiased covariance ``(D, D)`` of ``features`` ``(N, D)``, in float64.

    Warns:
        SingularCovarianceWarning: ``N <= D``: the covariance has rank below ``D``, and an FD
            computed from it is dominated by estimation error (use more samples than features).

    Raises:
        ValueError: fewer than 2 samples.
    """
    x = as_float64("features", features, 2)  # (N, D)
    n, d = x.shape
    if n < 2:
        raise ValueError(f"features needs at least 2 samples to estimate a covariance, got {n}")
    if n <= d:
        warnings.warn(f"covariance estimated from {n} samples of {d} features is singular (rank <= {n - 1} < {d}); "
                      "the Fréchet distance from it is unreliable: use more samples than features",
                      SingularCovarianceWarning, stacklevel=2)
    mu = x.mean(dim=0)  # (D,)
    centered = x - mu  # (N, D)
    sigma = centered.T @ centered / (n - 1)  # (D, D)
    return mu, sigma


def _sqrt_psd(name: str, sigma: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a PSD matrix by ``eigh``; round-off negatives clamped, real negatives refused."""
    w, v = torch.linalg.eigh(sigma)  # (D,), (D, D)
    scale = max(float(w.abs().max()), 1e-300)
    if float(w.min()) < -1e-6 * scale:
        raise ValueError(f"{name} is not positive semi-definite (smallest eigenvalue {float(w.min()):.3g}, "
                         f"largest {float(w.max()):.3g}): is it a covariance matrix?")
    return (v * w.clamp(min=0).sqrt()) @ v.T  # (D, D)


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
    """Fréchet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

    Args:
        mu1: Mean ``(D,)``; a torch tensor or NumPy array of any float dtype.
        sigma1: Covariance ``(D, D)``.
        mu2: Mean ``(D,)``.
        sigma2: Covariance ``(D, D)``.

    Returns:
        The distance (a float >= 0), computed in float64.

    Raises:
        TypeError: an argument is not a float tensor/array.
        ValueError: shapes disagree, a covariance is not symmetric PSD, or an entry is NaN/inf.
    """
    m1, m2 = as_float64("mu1", mu1, 1), as_float64("mu2", mu2, 1)
    s1, s2 = as_float64("sigma1", sigma1, 2), as_float64("sigma2", sigma2, 2)
    d = m1.shape[0]
    if m2.shape != (d,):
        raise ValueError(f"mu2 has shape {tuple(m2.shape)} but mu1 has ({d},): they must match")
    for name, s in (("sigma1", s1), ("sigma2", s2)):
        if s.shape != (d, d):
            raise ValueError(f"{name} must have shape ({d}, {d}) to match the means, got {tuple(s.shape)}")
        asym = float((s - s.T).abs().max())
        if asym > 1e-6 * max(float(s.abs().max()), 1e-300):
            raise ValueError(f"{name} is not symmetric (largest |S - S^T| = {asym:.3g}): is it a covariance matrix?")
    s1, s2 = (s1 + s1.T) / 2, (s2 + s2.T) / 2
    root1 = _sqrt_psd("sigma1", s1)  # (D, D)
    _sqrt_psd("sigma2", s2)  # only to check sigma2 is PSD
    middle = root1 @ s2 @ root1  # (D, D), symmetric PSD up to round-off
    eig = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0)  # (D,)
    fd = float(((m1 - m2) ** 2).sum() + torch.trace(s1) + torch.trace(s2) - 2 * eig.sqrt().sum())
    return max(fd, 0.0)  # only round-off can make it negative
