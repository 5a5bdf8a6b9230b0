"""Metrics on the classifier's class probabilities: the classifier score and class coverage.

- :func:`classifier_score`: the Inception Score's formula, ``exp(E_x KL(p(y|x) || p(y)))``,
  with MNIST's 10 classes; between 1 (every sample alike, or none confident) and 10
  (confident and evenly spread). Computed over the whole set, never per batch:
  ``p(y)`` over a batch of 100 is noisier and the score then depends on the batch size.
- :func:`class_coverage`: the histogram of predicted classes, its KL divergence to a
  reference histogram (the MNIST test set's), and how many classes hold at least
  1% of the samples. It sees mode collapse directly: one digit only gives KL near
  ``ln 10 = 2.30`` and one class covered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from torchgan_lite.metrics.frechet import as_float64

__all__ = ["ClassCoverage", "class_coverage", "class_histogram", "classifier_score"]


def _check_probs(probs: Any) -> torch.Tensor:
    p = as_float64("probs", probs, 2)  # (N, C)
    if p.shape[0] < 1 or p.shape[1] < 2:
        raise ValueError(f"probs must have shape (N >= 1, C >= 2), got {tuple(p.shape)}")
    if float(p.min()) < 0 or float((p.sum(1) - 1).abs().max()) > 1e-4:
        raise ValueError("probs must be rows of class probabilities (>= 0, each row summing to 1); "
                         "apply softmax to logits first")
    return p


def classifier_score(probs: Any) -> float:
    """``exp(mean_x KL(p(y|x) || p(y)))`` over all rows of ``probs`` ``(N, C)``.

    Args:
        probs: Class probabilities, one row per sample (torch tensor or NumPy array).

    Returns:
        The score, in [1, C].
    """
    p = _check_probs(probs)  # (N, C)
    marginal = p.mean(0, keepdim=True)  # (1, C)
    kl = (torch.xlogy(p, p) - torch.xlogy(p, marginal)).sum(1)  # (N,), 0 log 0 = 0
    return float(kl.mean().exp())


def class_histogram(probs: Any) -> torch.Tensor:
    """Fraction of rows of ``probs`` ``(N, C)`` whose most likely class is each class: ``(C,)`` float64."""
    p = _check_probs(probs)
    return torch.bincount(p.argmax(1), minlength=p.shape[1]).double() / p.shape[0]  # (C,)


@dataclass(frozen=True)
class ClassCoverage:
    """What :func:`class_coverage` measured.

    Attributes:
        histogram: Fraction of samples predicted as each class.
        kl: ``KL(histogram || reference)`` in nats (0: the reference's class balance).
        classes_covered: Classes holding at least ``threshold`` of the samples.
        threshold: The fraction used for ``classes_covered``.
    """

    histogram: tuple[float, ...]
    kl: float
    classes_covered: int
    threshold: float


def class_coverage(probs: Any, reference: Any, threshold: float = 0.01) -> ClassCoverage:
    """Predicted-class histogram of ``probs``, compared with a reference histogram.

    Args:
        probs: ``(N, C)`` class probabilities of the samples.
        reference: ``(C,)`` class fractions of the reference set (all > 0), e.g.
            ``class_histogram`` of the test set's probabilities.
        threshold: Fraction of the samples a class must hold to count as covered.

    Raises:
        ValueError: ``reference`` is not a distribution over the same C classes with no empty class.
    """
    hist = class_histogram(probs)  # (C,)
    ref = as_float64("reference", reference, 1)  # (C,)
    if ref.shape != hist.shape:
        raise ValueError(f"reference has {ref.shape[0]} classes but probs has {hist.shape[0]}")
    if float(ref.min()) <= 0 or abs(float(ref.sum()) - 1) > 1e-6:
        raise ValueError("reference must be class fractions, all > 0, summing to 1")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        raise ValueError(f"threshold must be a fraction in (0, 1], got {threshold!r}")
    kl = float((torch.xlogy(hist, hist) - torch.xlogy(hist, ref)).sum())
    covered = int((hist >= threshold).sum())
    return ClassCoverage(tuple(hist.tolist()), max(kl, 0.0), covered, float(threshold))
