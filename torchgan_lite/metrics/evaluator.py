"""The MNIST evaluation protocol: samples in, flat dict of floats out, each beside its real-data floor.

Protocol (see ``docs/evaluation.md``):

- Features and class probabilities come from the shipped classifier
  (:mod:`torchgan_lite.metrics.classifier`).
- The reference set is the 10,000-image MNIST test set. Its features, k-NN radii and
  class histogram are computed once and cached under :func:`cache_dir`, keyed by the
  classifier's sha256 and a fingerprint of the test set (never written into the data folder).
- ``n`` samples (default 10,000) are scored against it: FD, KID (100 subsets of
  ``min(1000, n)``), classifier score, class coverage, k-NN precision/recall (k=3).
- The *floor*: ``n`` training images (a random subset drawn with ``seed``) scored the
  same way against the test set, returned under ``real_``-prefixed keys. FD in
  particular is biased upwards at finite ``n``, so a figure means something only
  beside the floor at the same ``n``.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchgan_lite.data.mnist import mnist_with_labels
from torchgan_lite.metrics.classifier import CLASSIFIER_SHA256, extract, load_classifier
from torchgan_lite.metrics.frechet import feature_statistics
from torchgan_lite.metrics.images import distance_scores
from torchgan_lite.metrics.precision_recall import knn_radii
from torchgan_lite.metrics.scores import class_coverage, class_histogram, classifier_score
from torchgan_lite.utils.atomic import atomic_open
from torchgan_lite.utils.checks import check_int
from torchgan_lite.utils.paths import cache_dir
from torchgan_lite.utils.runtime import resolve_device

__all__ = ["METRIC_NAMES", "MNISTEvaluator", "evaluate_mnist"]

METRIC_NAMES = ("fd", "kid_mean", "kid_std", "classifier_score", "coverage_kl", "classes_at_1pct",
                "precision", "recall")
_CACHE_VERSION = 2
_K = 3  # neighbours for precision/recall (Kynkäänniemi et al.)
_KID_SUBSETS = 100
_KID_SUBSET_SIZE = 1000
_MEMORY: dict[str, dict[str, torch.Tensor]] = {}  # reference statistics already loaded in this process

SampleSource = nn.Module | Callable[[int], torch.Tensor] | torch.Tensor


def _write_atomic(path: Path, write: Callable[[Any], None]) -> None:
    with atomic_open(path, "wb", what="write the cache") as f:  # the package's one atomic writer
        write(f)



class MNISTEvaluator:
    """Scores MNIST samples against the test set; holds the reference statistics once loaded.

    Args:
        n: Samples scored per evaluation (and training images in the floor).
        batch_size: Samples generated and classified per chunk (bounds memory).
        data_root: Folder holding ``MNIST/raw/``; None: ``$TORCHGAN_LITE_DATA`` (see :mod:`torchgan_lite.data`).
        device: Where the classifier (and noise for a generator) runs.
        seed: Seeds the generator's noise, the floor's training subset and KID's subsets.
    """

    def __init__(self, n: int = 10000, batch_size: int = 500, data_root: str | os.PathLike[str] | None = None,
                 device: torch.device | str = "cpu", seed: int = 0) -> None:
        self.n = check_int("n", n)
        if n < _K + 1:
            raise ValueError(f"n must be at least {_K + 1} for k-NN precision/recall, got {n}")
        self.batch_size = check_int("batch_size", batch_size)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        if data_root is not None and not isinstance(data_root, (str, os.PathLike)):
            raise TypeError(f"data_root must be a path or None, got {type(data_root).__name__}")
        self.data_root = data_root
        self.device = resolve_device(device)
        self.seed = seed
        self._ref: dict[str, torch.Tensor] | None = None
        self._floor: dict[str, float] | None = None
        self._ref_key = ""

    # ------------------------------------------------------------------ reference

    def _test_set(self) -> tuple[torch.Tensor, str]:
        x, y = mnist_with_labels(self.data_root, train=False)  # (10000, 1, 28, 28), (10000,)
        digest = hashlib.sha256(x.numpy().tobytes() + y.numpy().tobytes()).hexdigest()
        return x, digest

    def reference(self) -> dict[str, torch.Tensor]:
        """Test-set features ``(10000, 128)``, mean/covariance, k-NN radii, class histogram, predicted classes."""
        if self._ref is not None:
            return self._ref
        x, data_sha = self._test_set()
        path = cache_dir() / f"mnist_test_{CLASSIFIER_SHA256[:16]}_{data_sha[:16]}.pt"
        ref = _MEMORY.get(str(path))
        if ref is None and path.is_file():
            try:
                saved = torch.load(path, map_location="cpu", weights_only=True)
                if (saved.get("version") == _CACHE_VERSION and saved.get("extractor_sha256") == CLASSIFIER_SHA256
                        and saved.get("data_sha256") == data_sha and saved["features"].shape[0] == x.shape[0]):
                    ref = {k: saved[k] for k in ("features", "radii", "class_hist", "predictions")}
            except Exception as err:  # a torn or foreign file: recompute and overwrite it
                warnings.warn(f"ignoring unreadable cache file {path}: {err}", RuntimeWarning, stacklevel=2)
        if ref is None:
            feats, probs = extract(load_classifier(self.device), x, self.batch_size)  # (N, 128), (N, 10)
            ref = {"features": feats, "radii": knn_radii(feats, _K), "class_hist": class_histogram(probs),
                   "predictions": probs.argmax(1)}
            payload = {"version": _CACHE_VERSION, "extractor_sha256": CLASSIFIER_SHA256, "data_sha256": data_sha,
                       **ref}
            try:
                _write_atomic(path, lambda f: torch.save(payload, f))
            except OSError as err:
                warnings.warn(f"could not cache reference statistics in {path}: {err}", RuntimeWarning, stacklevel=2)
        _MEMORY[str(path)] = ref
        if "mu" not in ref:
            ref["mu"], ref["sigma"] = feature_statistics(ref["features"])
        self._ref = ref
        self._ref_key = path.stem
        return ref

    def floor(self) -> dict[str, float]:
        """The metrics of ``n`` real training images (drawn with ``seed``) against the test set; cached."""
        if self._floor is not None:
            return self._floor
        self.reference()
        path = cache_dir() / f"{self._ref_key.replace('mnist_test', 'mnist_floor')}_n{self.n}_seed{self.seed}.json"
        floor: dict[str, float] | None = None
        if path.is_file():
            try:
                saved = json.loads(path.read_text())
                if sorted(saved) == sorted(METRIC_NAMES):
                    floor = {k: float(v) for k, v in saved.items()}
            except (OSError, ValueError):
                floor = None
        if floor is None:
            x = mnist_with_labels(self.data_root, train=True)[0]  # (60000, 1, 28, 28)
            if self.n > x.shape[0]:
                raise ValueError(f"n={self.n} is more than the {x.shape[0]} training images the floor is drawn from")
            idx = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(self.seed))[: self.n]
            floor = self.evaluate_tensor(x[idx])
            text = json.dumps(floor, indent=1)
            try:
                _write_atomic(path, lambda f: f.write(text.encode()))
            except OSError as err:
                warnings.warn(f"could not cache the real-data floor in {path}: {err}", RuntimeWarning, stacklevel=2)
        self._floor = floor
        return floor

    # ------------------------------------------------------------------ scoring

    def score(self, feats: torch.Tensor, probs: torch.Tensor) -> dict[str, float]:
        """The metrics of sample features ``(N, 128)`` and probabilities ``(N, 10)`` against the test set."""
        ref = self.reference()
        # FD, KID and precision/recall through the generic code (metrics.images), on every row of both sides.
        d = distance_scores(feats, ref["features"], ref["mu"], ref["sigma"], ref["radii"], None, self.seed,
                            _KID_SUBSETS, _KID_SUBSET_SIZE, knn_fake=feats.shape[0])
        cov = class_coverage(probs, ref["class_hist"])
        return {"fd": d["fd"], "kid_mean": d["kid_mean"], "kid_std": d["kid_std"],
                "classifier_score": classifier_score(probs), "coverage_kl": cov.kl,
                "classes_at_1pct": float(cov.classes_covered), "precision": d["precision"], "recall": d["recall"]}

    def _features(self, chunks: Iterator[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        model = load_classifier(self.device)
        feats, probs, lo, count = [], [], float("inf"), 0
        for x in chunks:
            f, p = extract(model, x, self.batch_size)
            feats.append(f)
            probs.append(p)
            lo = min(lo, float(x.min()))
            count += x.shape[0]
        if count != self.n:
            raise ValueError(f"expected {self.n} samples, got {count}")
        if lo > -0.5:
            warnings.warn(f"the samples' smallest value is {lo:.3f}: MNIST background is -1 in the GAN's [-1, 1] "
                          "scale; are these images in [0, 1]? (rescale with x * 2 - 1)", RuntimeWarning, stacklevel=3)
        return torch.cat(feats), torch.cat(probs)

    def _check_chunk(self, x: object, expected: int, what: str) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{what} must give a torch.Tensor, got {type(x).__name__}")
        if tuple(x.shape) != (expected, 1, 28, 28):
            raise ValueError(f"{what} must give MNIST images of shape ({expected}, 1, 28, 28), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"{what} must give floating-point images in [-1, 1], got dtype {x.dtype}")
        x = x.detach()
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{what} gave NaN or infinite pixel values")
        lo, hi = float(x.min()), float(x.max())
        if lo < -1.001 or hi > 1.001:
            raise ValueError(f"{what} must give images in [-1, 1] (the GAN's scale), got values in "
                             f"[{lo:.3f}, {hi:.3f}]: rescale or clamp them")
        return x

    def _chunks_from(self, source: SampleSource) -> Iterator[torch.Tensor]:
        b = self.batch_size
        if isinstance(source, torch.Tensor):
            if source.dim() != 4 or source.shape[0] < self.n:
                raise ValueError(f"samples must be a tensor (N >= n={self.n}, 1, 28, 28) in [-1, 1], "
                                 f"got shape {tuple(source.shape)}")
            for i in range(0, self.n, b):
                yield self._check_chunk(source[i : min(i + b, self.n)], min(b, self.n - i), "the samples tensor")
        elif isinstance(source, nn.Module):
            latent = getattr(source, "latent_dim", None)
            if isinstance(latent, bool) or not isinstance(latent, int) or latent < 1:
                raise TypeError(f"a generator module needs an int latent_dim attribute, got {latent!r}")
            param = next(source.parameters(), None)
            dev = param.device if param is not None else self.device
            dtype = param.dtype if param is not None else torch.float32
            # One noise bank from its own RNG (the global one is left untouched), then chunks of it.
            z_all = torch.randn(self.n, latent, generator=torch.Generator().manual_seed(self.seed))  # (n, latent)
            mode = source.training
            source.eval()
            try:
                with torch.no_grad():
                    for i in range(0, self.n, b):
                        z = z_all[i : i + b].to(device=dev, dtype=dtype)  # (m, latent)
                        yield self._check_chunk(source(z), z.shape[0], "the generator")
            finally:
                source.train(mode)
        elif callable(source):
            with torch.no_grad():
                for i in range(0, self.n, b):
                    m = min(b, self.n - i)
                    yield self._check_chunk(source(m), m, f"sample({m})")
        else:
            raise TypeError("generator_or_samples must be a generator nn.Module (with latent_dim), a callable "
                            f"sample(n) -> tensor, or a (N, 1, 28, 28) tensor; got {type(source).__name__}")

    def evaluate_tensor(self, samples: torch.Tensor) -> dict[str, float]:
        """The metrics of the first ``n`` rows of ``samples`` ``(N, 1, 28, 28)`` (no floor)."""
        return self.score(*self._features(self._chunks_from(samples)))

    def evaluate(self, source: SampleSource, with_floor: bool = True) -> dict[str, float]:
        """Metrics of ``n`` samples from ``source``, plus the floor under ``real_`` keys if ``with_floor``."""
        result = self.score(*self._features(self._chunks_from(source)))
        if with_floor:
            result.update({f"real_{k}": v for k, v in self.floor().items()})
        return result


def evaluate_mnist(generator_or_samples: SampleSource, n: int = 10000, batch_size: int = 500,
                   data_root: str | os.PathLike[str] | None = None, device: torch.device | str = "cpu",
                   seed: int = 0) -> dict[str, float]:
    """Sample-quality metrics of an MNIST generator, each beside the real-data floor.

    Args:
        generator_or_samples: A generator ``nn.Module`` with a ``latent_dim`` attribute (sampled
            with N(0, I) noise from its own generator seeded with ``seed``, in eval mode, without
            gradients; the global RNG is not touched), a callable ``sample(k) -> (k, 1, 28, 28)``
            (called in chunks of ``batch_size``; seed it yourself), or a tensor ``(N >= n, 1, 28, 28)``
            (its first ``n`` rows). Images in [-1, 1].
        n: Samples to score (and real training images in the floor).
        batch_size: Samples generated and classified at once.
        data_root: Folder holding ``MNIST/raw/``; None: ``$TORCHGAN_LITE_DATA``.
        device: Where the classifier runs (a generator module stays where it is).
        seed: Noise, floor subset and KID subsets.

    Returns:
        Floats: ``fd``, ``kid_mean``, ``kid_std``, ``classifier_score``, ``coverage_kl``,
        ``classes_at_1pct``, ``precision``, ``recall``, and the same names prefixed ``real_``
        for ``n`` real training images (the floor). Lower is better for ``fd``, ``kid_mean``,
        ``coverage_kl``; higher for the others (``classifier_score`` at most 10).
    """
    return MNISTEvaluator(n, batch_size, data_root, device, seed).evaluate(generator_or_samples)
