"""Improved precision and recall (Kynkäänniemi et al., 2019) with k-nearest-neighbour balls.

Each set's manifold is the union of balls around its points, each ball's radius the
distance to that point's k-th nearest neighbour in its own set (k=3 as in the
paper). Precision: the fraction of generated samples inside the real manifold
(are samples realistic?). Recall: the fraction of real samples inside the
generated manifold (is the real variety covered?).

:func:`density_coverage` (Naeem et al., 2020) counts fakes inside the real balls only (k=5).

Distances are computed in float64, ``chunk_size`` rows at a time, so memory is
``chunk_size x N`` numbers, never ``N x N``.
"""

from __future__ import annotations

from typing import Any

import torch

from torchgan_lite.metrics.frechet import as_float64
from torchgan_lite.utils.checks import check_int

__all__ = ["density_coverage", "knn_radii", "precision_recall"]


def _check_chunk(chunk_size: object) -> int:
    return check_int("chunk_size", chunk_size, 1)


def _sq_dists(a: torch.Tensor, b: torch.Tensor, b_sq: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances ``(len(a), len(b))``; ``b_sq`` is ``(b**2).sum(1)``."""
    return ((a * a).sum(1, keepdim=True) + b_sq[None, :] - 2 * a @ b.T).clamp_(min=0)  # (n_a, n_b)


def knn_radii(feats: Any, k: int = 3, chunk_size: int = 512) -> torch.Tensor:
    """Distance from each row of ``feats`` ``(N, D)`` to its k-th nearest other row: ``(N,)`` float64."""
    x = as_float64("feats", feats, 2)  # (N, D)
    check_int("k", k, 1)
    if x.shape[0] <= k:
        raise ValueError(f"feats needs more than k={k} rows to find k nearest neighbours, got {x.shape[0]}")
    chunk_size = _check_chunk(chunk_size)
    x_sq = (x * x).sum(1)  # (N,)
    out = torch.empty(x.shape[0], dtype=torch.float64)
    for i in range(0, x.shape[0], chunk_size):
        d2 = _sq_dists(x[i : i + chunk_size], x, x_sq)  # (c, N), includes the point itself at 0
        out[i : i + chunk_size] = d2.topk(k + 1, dim=1, largest=False).values[:, k]
    return out.sqrt()


def precision_recall(real: Any, fake: Any, k: int = 3, chunk_size: int = 512,
                     real_radii: torch.Tensor | None = None) -> tuple[float, float]:
    """k-NN precision and recall of ``fake`` ``(N_f, D)`` against ``real`` ``(N_r, D)``.

    Args:
        real: Real features (torch tensor or NumPy array, any float dtype).
        fake: Generated features, same width.
        k: The neighbour whose distance sets each ball's radius (the paper's 3).
        chunk_size: Rows of distances computed at once (memory ``chunk_size x N``).
        real_radii: ``knn_radii(real, k)``, if already computed (they depend only on the real set).

    Returns:
        ``(precision, recall)``, each in [0, 1].
    """
    r, f, chunk_size, real_radii = _checked_sets(real, fake, k, chunk_size, real_radii)
    fake_r2 = knn_radii(f, k, chunk_size) ** 2  # (N_f,)
    real_r2 = real_radii.double() ** 2  # (N_r,)
    real_sq = (r * r).sum(1)  # (N_r,)
    fake_inside = torch.empty(f.shape[0], dtype=torch.bool)  # fake i in some real ball
    real_inside = torch.zeros(r.shape[0], dtype=torch.bool)  # real j in some fake ball
    for i in range(0, f.shape[0], chunk_size):
        d2 = _sq_dists(f[i : i + chunk_size], r, real_sq)  # (c, N_r): one matrix serves both directions
        fake_inside[i : i + chunk_size] = (d2 <= real_r2[None, :]).any(1)
        real_inside |= (d2 <= fake_r2[i : i + chunk_size, None]).any(0)
    return float(fake_inside.double().mean()), float(real_inside.double().mean())


def _checked_sets(real: Any, fake: Any, k: int, chunk_size: object, real_radii: torch.Tensor | None
                  ) -> tuple[torch.Tensor, torch.Tensor, int, torch.Tensor]:
    """Both metrics' arguments checked: float64 ``(N_r, D)`` and ``(N_f, D)``, the chunk, the real radii."""
    r, f = as_float64("real", real, 2), as_float64("fake", fake, 2)
    if r.shape[1] != f.shape[1]:
        raise ValueError(f"real has {r.shape[1]} features per row but fake has {f.shape[1]}: they must match")
    chunk = _check_chunk(chunk_size)
    if real_radii is None:
        real_radii = knn_radii(r, k, chunk)
    elif not isinstance(real_radii, torch.Tensor) or real_radii.shape != (r.shape[0],):
        raise ValueError(f"real_radii must be a tensor of shape ({r.shape[0]},), got "
                         f"{getattr(real_radii, 'shape', type(real_radii).__name__)}")
    return r, f, chunk, real_radii


def density_coverage(real: Any, fake: Any, k: int = 5, chunk_size: int = 512,
                     real_radii: torch.Tensor | None = None) -> tuple[float, float]:
    """Density and coverage (Naeem et al., 2020) of ``fake`` ``(N_f, D)`` against ``real`` ``(N_r, D)``.

    Both use only the real set's k-NN balls, so unlike precision and recall they are not
    swayed by outliers among the fakes or by the fakes' own neighbourhoods:

    - density: ``(1 / (k N_f)) sum_j #{i : fake_j in B(real_i, r_i)}``, the mean number of
      real balls holding a fake, over k; about 1 when the two sets match, above 1 for
      fakes crowded where the real data is densest, unbounded above.
    - coverage: the fraction of real points whose ball holds at least one fake, in [0, 1].

    Args:
        real: Real features (torch tensor or NumPy array, any float dtype).
        fake: Generated features, same width.
        k: The neighbour whose distance sets each real ball's radius (the paper's 5).
        chunk_size: Rows of distances computed at once (memory ``chunk_size x N_r``).
        real_radii: ``knn_radii(real, k)``, if already computed.

    Returns:
        ``(density, coverage)``.
    """
    r, f, chunk_size, real_radii = _checked_sets(real, fake, k, chunk_size, real_radii)
    real_r2 = real_radii.double() ** 2  # (N_r,)
    real_sq = (r * r).sum(1)  # (N_r,)
    inside = 0.0  # (fake, real ball) pairs
    covered = torch.zeros(r.shape[0], dtype=torch.bool)  # real ball i holds some fake
    for i in range(0, f.shape[0], chunk_size):
        hit = _sq_dists(f[i : i + chunk_size], r, real_sq) <= real_r2[None, :]  # (c, N_r)
        inside += float(hit.sum())
        covered |= hit.any(0)
    return inside / (k * f.shape[0]), float(covered.double().mean())
