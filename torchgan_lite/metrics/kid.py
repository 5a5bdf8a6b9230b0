"""Kernel distance (KID, Bińkowski et al. 2018): the unbiased MMD² with a cubic polynomial kernel.

``k(x, y) = (x·y / d + 1)^3``. Unlike FD, the estimator is unbiased, so its mean
over random subsets is near 0 for two samples of one distribution whatever the
sample size; the spread over subsets is reported beside it.
"""

from __future__ import annotations

from typing import Any

import torch

from torchgan_lite.metrics.frechet import as_float64
from torchgan_lite.utils.checks import check_int

__all__ = ["kernel_distance", "mmd2_unbiased"]



def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Unbiased MMD² of ``x`` ``(m, D)`` and ``y`` ``(m, D)`` (same m) with ``k(a, b) = (a·b / D + 1)^3``.

    The dot products are computed in the inputs' dtype, the kernel and its sums in float64.
    """
    m, d = x.shape

    def kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return ((a @ b.T).double() / d + 1) ** 3  # (m, m)

    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    off = m * (m - 1)
    return (kxx.sum() - kxx.diagonal().sum()) / off + (kyy.sum() - kyy.diagonal().sum()) / off - 2 * kxy.mean()


def kernel_distance(feats_a: Any, feats_b: Any, subsets: int = 100, subset_size: int = 1000,
                    seed: int = 0) -> tuple[float, float]:
    """KID between two feature sets: mean and standard deviation of the unbiased MMD² over random subsets.

    Each subset draws ``subset_size`` rows of each set without replacement, from a
    generator seeded with ``seed`` (so the result is reproducible).

    Args:
        feats_a: ``(N_a, D)`` features (torch tensor or NumPy array, any float dtype).
        feats_b: ``(N_b, D)`` features.
        subsets: How many subsets to average over.
        subset_size: Rows per subset; at most ``min(N_a, N_b)``.
        seed: Seed of the subset draws.

    Returns:
        ``(mean, std)`` over the subsets (std is 0 for one subset).

    Raises:
        ValueError: feature widths differ, or ``subset_size`` is larger than a set or below 2.
    """
    a, b = as_float64("feats_a", feats_a, 2), as_float64("feats_b", feats_b, 2)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feats_a has {a.shape[1]} features per row but feats_b has {b.shape[1]}: they must match")
    check_int("subsets", subsets, 1)
    check_int("subset_size", subset_size, 2)
    check_int("seed", seed, 0)
    if subset_size > min(a.shape[0], b.shape[0]):
        raise ValueError(f"subset_size={subset_size} is larger than the smaller feature set "
                         f"({min(a.shape[0], b.shape[0])} rows); pass subset_size <= {min(a.shape[0], b.shape[0])}")
    # Dot products of float32 features in float32 (half the time of float64; their round-off,
    # ~1e-7 relative, is far below KID's spread over subsets); the kernel and sums in float64.
    a, b = a.float(), b.float()
    gen = torch.Generator().manual_seed(seed)
    values = torch.empty(subsets, dtype=torch.float64)
    for i in range(subsets):
        ia = torch.randperm(a.shape[0], generator=gen)[:subset_size]
        ib = torch.randperm(b.shape[0], generator=gen)[:subset_size]
        values[i] = mmd2_unbiased(a[ia], b[ib])
    std = float(values.std(unbiased=True)) if subsets > 1 else 0.0
    return float(values.mean()), std
