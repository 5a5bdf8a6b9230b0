"""Offline sample-quality metrics for MNIST GANs, in pure PyTorch.

- :func:`evaluate_mnist`: FD, KID, classifier score, class coverage and k-NN
  precision/recall of a generator (or samples), each beside the real-data floor.
- :class:`MetricsCallback`: the same, at the end of every N training epochs.
- The building blocks, usable on any features: :func:`frechet_distance`,
  :func:`kernel_distance`, :func:`classifier_score`, :func:`class_coverage`,
  :func:`precision_recall`.

Features come from a small CNN whose weights ship with the package (sha256-checked);
``python -m torchgan_lite.metrics.train_classifier`` rebuilds them. See
``docs/evaluation.md`` for the protocol and the floors.
"""

from .callback import MetricsCallback
from .classifier import CLASSIFIER_SHA256, FEATURE_DIM, MNISTClassifier, extract, load_classifier
from .evaluator import CACHE_ENV_VAR, METRIC_NAMES, MNISTEvaluator, cache_dir, evaluate_mnist
from .frechet import SingularCovarianceWarning, feature_statistics, frechet_distance
from .kid import kernel_distance
from .precision_recall import knn_radii, precision_recall
from .scores import ClassCoverage, class_coverage, class_histogram, classifier_score

__all__ = [
    "CACHE_ENV_VAR",
    "CLASSIFIER_SHA256",
    "FEATURE_DIM",
    "METRIC_NAMES",
    "ClassCoverage",
    "MNISTClassifier",
    "MNISTEvaluator",
    "MetricsCallback",
    "SingularCovarianceWarning",
    "cache_dir",
    "class_coverage",
    "class_histogram",
    "classifier_score",
    "evaluate_mnist",
    "extract",
    "feature_statistics",
    "frechet_distance",
    "kernel_distance",
    "knn_radii",
    "load_classifier",
    "precision_recall",
]
