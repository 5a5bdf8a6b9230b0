"""Sample quality of any images: FD, KID, precision/recall and density/coverage from any feature extractor.

    ev = ImageEvaluator(real_images, features="my_extractor.pt", source="cifar10-train", n=10000)
    result = ev.evaluate(generator)        # or a sample(k) callable, or a (N, C, H, W) tensor in [-1, 1]
    result["fd"], result["real_fd"]        # the figure and its floor (two disjoint real sets)
    ev.protocol                            # n, which real subset, the extractor, resizing: beside every figure

Protocol (``docs/evaluation.md``):

- ``n`` samples against ``n`` real images. The real images are a subset of the real set
  drawn with ``seed`` (all of it, in its order, when ``n`` is its size); their features,
  mean, covariance and k-NN radii are cached (:mod:`torchgan_lite.metrics.reference`).
- The extractor reads float images in [-1, 1] at their own size: nothing is resized here.
  Real images are taken as uint8 ``(N, C, H, W)`` (mapped to ``x / 127.5 - 1``) or floats in [-1, 1].
- FD on all ``n``; KID over 100 subsets of ``min(1000, n)``; precision/recall (k=3) and
  density/coverage (k=5) on the first ``min(n, knn_n)`` of each side.
- The *floor*: ``n`` other real images (disjoint from the reference) scored the same way,
  under ``real_`` keys, when the real set has at least ``2 n`` images.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from torchgan_lite.metrics.features import FeatureExtractor, as_extractor
from torchgan_lite.metrics.frechet import feature_statistics, frechet_distance
from torchgan_lite.metrics.kid import kernel_distance
from torchgan_lite.metrics.precision_recall import density_coverage, precision_recall
from torchgan_lite.metrics.reference import ReferenceStats, cached_json, cached_reference
from torchgan_lite.utils.checks import check_bool, check_int, describe
from torchgan_lite.utils.runtime import resolve_device

__all__ = ["IMAGE_METRICS", "ImageEvaluator", "RealImages", "SampleSource", "distance_scores", "real_subset",
           "sample_chunks", "to_float_images"]

IMAGE_METRICS = ("fd", "kid_mean", "kid_std", "precision", "recall", "density", "coverage")
K_PR, K_DC = 3, 5  # Kynkäänniemi et al. 2019; Naeem et al. 2020
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000

SampleSource = nn.Module | Callable[[int], torch.Tensor] | torch.Tensor
RealImages = torch.Tensor | Callable[[], torch.Tensor]


def to_float_images(x: object, what: str = "images") -> torch.Tensor:
    """uint8 images ``(N, C, H, W)`` as floats ``x / 127.5 - 1``; float images checked to be finite and in [-1, 1]."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"{what} must be a (N, C, H, W) tensor, got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else describe(x)}")
    if x.dtype == torch.uint8:
        return x.float() / 127.5 - 1
    if not x.is_floating_point():
        raise TypeError(f"{what} must be uint8 (0-255) or floats in [-1, 1], got dtype {x.dtype}")
    x = x.detach()
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{what} hold NaN or infinite pixel values")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1.001 or hi > 1.001:
        raise ValueError(f"{what} must be in [-1, 1] (the GAN's scale), got values in [{lo:.3f}, {hi:.3f}]: "
                         "rescale or clamp them")
    return x


def real_subset(size: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Indices of the reference subset (``n`` of ``size``, drawn with ``seed``, in the set's order; all of it when
    ``n == size``) and of the floor's ``n`` others (None when ``size < 2 n``)."""
    if n > size:
        raise ValueError(f"n={n} is more than the real set's {size} images: pass n <= {size} (--n {size})")
    if n == size:
        return torch.arange(size), None
    perm = torch.randperm(size, generator=torch.Generator().manual_seed(seed))
    floor = perm[n : 2 * n].sort().values if size >= 2 * n else None
    return perm[:n].sort().values, floor


def sample_chunks(source: SampleSource, n: int, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """``n`` samples of ``source`` in chunks of at most ``batch_size``, each checked (floats in [-1, 1], one shape).

    A generator module (with ``latent_dim``) is sampled in eval mode from a noise bank drawn
    from its own ``torch.Generator`` seeded with ``seed`` (the global RNG is untouched), a
    conditional one (``num_classes``) with the balanced labels ``0, 1, ..., 0, ...``; a callable
    is asked for ``sample(k)``; a tensor gives its first ``n`` rows.
    """
    b, shape = batch_size, None

    def checked(x: object, m: int, what: str) -> torch.Tensor:
        nonlocal shape
        x = to_float_images(x, f"the images {what} gave")
        if x.shape[0] != m or (shape is not None and tuple(x.shape[1:]) != shape):
            raise ValueError(f"{what} must give {m} images of shape {shape or '(C, H, W)'}, got {tuple(x.shape)}")
        shape = tuple(x.shape[1:])
        return x

    if isinstance(source, torch.Tensor):
        if source.dim() != 4 or source.shape[0] < n:
            raise ValueError(f"samples must be a tensor (N >= n={n}, C, H, W) in [-1, 1], got shape "
                             f"{tuple(source.shape)}")
        for i in range(0, n, b):
            yield checked(source[i : min(i + b, n)], min(b, n - i), "the samples tensor")
    elif isinstance(source, nn.Module):
        latent = getattr(source, "latent_dim", None)
        if isinstance(latent, bool) or not isinstance(latent, int) or latent < 1:
            raise TypeError(f"a generator module needs an int latent_dim attribute, got {latent!r}")
        classes = getattr(source, "num_classes", None)
        param = next(source.parameters(), None)
        dev = param.device if param is not None else torch.device("cpu")
        dtype = param.dtype if param is not None else torch.float32
        z_all = torch.randn(n, latent, generator=torch.Generator().manual_seed(seed))  # (n, latent)
        mode = source.training
        source.eval()
        try:
            with torch.no_grad():
                for i in range(0, n, b):
                    z = z_all[i : i + b].to(device=dev, dtype=dtype)  # (m, latent)
                    if classes is None:
                        out = source(z)
                    else:
                        out = source(z, (torch.arange(i, i + z.shape[0]) % int(classes)).to(dev))
                    yield checked(out, z.shape[0], "the generator")
        finally:
            source.train(mode)
    elif callable(source):
        with torch.no_grad():
            for i in range(0, n, b):
                m = min(b, n - i)
                yield checked(source(m), m, f"sample({m})")
    else:
        raise TypeError("samples must be a generator nn.Module (with latent_dim), a callable sample(k) -> tensor, "
                        f"or a (N, C, H, W) tensor; got {describe(source)}")


def distance_scores(fake: torch.Tensor, real: torch.Tensor, real_mu: torch.Tensor, real_sigma: torch.Tensor,
                    radii_pr: torch.Tensor, radii_dc: torch.Tensor | None = None, seed: int = 0,
                    kid_subsets: int = KID_SUBSETS, kid_subset_size: int = KID_SUBSET_SIZE,
                    knn_fake: int | None = None) -> dict[str, float]:
    """FD, KID, precision/recall (and density/coverage if ``radii_dc``) of fake features against real ones.

    Args:
        fake: ``(N_f, D)`` sample features (all for FD/KID; the first ``knn_fake`` for the k-NN metrics).
        real: ``(N_r, D)`` reference features (likewise).
        real_mu: ``(D,)`` mean of all of ``real``.
        real_sigma: ``(D, D)`` its covariance.
        radii_pr: k=3 radii of the first ``m`` real rows; ``m`` rows of each side enter precision/recall.
        radii_dc: k=5 radii of the same rows, for density/coverage; None: not computed.
        seed: KID's subsets.
        kid_subsets: KID's number of subsets.
        kid_subset_size: Rows per KID subset (capped at the smaller set).
        knn_fake: Fake rows in the k-NN metrics; None: as many as real rows (``len(radii_pr)``).
    """
    mu, sigma = feature_statistics(fake)
    kid_mean, kid_std = kernel_distance(fake, real, subsets=kid_subsets,
                                        subset_size=min(kid_subset_size, fake.shape[0], real.shape[0]), seed=seed)
    m = radii_pr.shape[0]
    mf = m if knn_fake is None else knn_fake
    precision, recall = precision_recall(real[:m], fake[:mf], k=K_PR, real_radii=radii_pr)
    out = {"fd": frechet_distance(mu, sigma, real_mu, real_sigma), "kid_mean": kid_mean, "kid_std": kid_std,
           "precision": precision, "recall": recall}
    if radii_dc is not None:
        out["density"], out["coverage"] = density_coverage(real[:m], fake[:mf], k=K_DC, real_radii=radii_dc)
    return out


class ImageEvaluator:
    """Scores samples against a real image set through any feature extractor; the reference is cached.

    Args:
        real: The real set: uint8 ``(N, C, H, W)`` or floats in [-1, 1], or a callable returning
            it (called only when the cache misses).
        features: The extractor: a :class:`~torchgan_lite.metrics.features.FeatureExtractor`,
            an ``nn.Module`` mapping ``(B, C, H, W)`` in [-1, 1] to ``(B, D)``, ``"mnist"``, or a
            TorchScript file's path.
        source: What the real set is (keys the cache: a set name and split, a folder, a file's
            sha256). None: the sha256 of ``real``'s bytes (a tensor only).
        n: Samples per evaluation, and real images in the reference (and in the floor).
        batch_size: Images per extractor (and generator) call.
        device: Where the extractor runs.
        seed: The reference subset, the noise of a generator module, KID's subsets.
        knn_n: At most this many rows of each side enter precision/recall and density/coverage.
        cache: Keep the reference statistics on disk (:func:`~torchgan_lite.metrics.reference.cache_dir`).
    """

    metric_names = IMAGE_METRICS

    def __init__(self, real: RealImages, features: FeatureExtractor | nn.Module | str | os.PathLike[str] | None = None,
                 *, source: str | None = None, n: int = 10000, batch_size: int = 500,
                 device: torch.device | str = "cpu", seed: int = 0, knn_n: int = 10000, cache: bool = True) -> None:
        self.n = check_int("n", n, K_DC + 1)
        self.batch_size = check_int("batch_size", batch_size)
        self.seed = check_int("seed", seed, 0)
        self.knn_n = check_int("knn_n", knn_n, K_DC + 1)
        self.cache = check_bool("cache", cache)
        self.device = resolve_device(device)
        if not isinstance(real, torch.Tensor) and not callable(real):
            raise TypeError(f"real must be a (N, C, H, W) image tensor or a callable returning one, got "
                            f"{describe(real)}")
        if source is None:
            if not isinstance(real, torch.Tensor):
                raise TypeError("source must name the real set (it keys the cache) when real is a callable")
            source = "sha256:" + hashlib.sha256(real.detach().cpu().contiguous().numpy().tobytes()).hexdigest()
        elif not isinstance(source, str) or not source:
            raise TypeError(f"source must be a non-empty str describing the real set, got {describe(source)}")
        self.source = source
        self.extractor = as_extractor(features, self.device)
        self._real = real
        self._loaded: torch.Tensor | None = None
        self._ref: ReferenceStats | None = None

    @property
    def key(self) -> dict[str, Any]:
        """What the cached reference is keyed by."""
        return {"kind": "images", "source": self.source, "extractor": self.extractor.fingerprint, "n": self.n,
                "seed": self.seed, "knn_n": self.knn_n, "k": [K_PR, K_DC]}

    def _real_images(self) -> torch.Tensor:
        if self._loaded is None:
            x = self._real() if callable(self._real) and not isinstance(self._real, torch.Tensor) else self._real
            if not isinstance(x, torch.Tensor) or x.dim() != 4:
                raise ValueError(f"the real set must be a (N, C, H, W) tensor, got {describe(x)}")
            self._loaded = x
        return self._loaded

    def _features_of(self, images: torch.Tensor) -> torch.Tensor:
        chunks = [self.extractor(to_float_images(images[i : i + self.batch_size], "the real images"))
                  for i in range(0, images.shape[0], self.batch_size)]
        return torch.cat(chunks)  # (N, D)

    def reference(self) -> ReferenceStats:
        """The real side: features of ``n`` real images, their statistics and k-NN radii (cached)."""
        if self._ref is None:
            def build() -> tuple[torch.Tensor, int, tuple[int, ...]]:
                x = self._real_images()
                idx = real_subset(x.shape[0], self.n, self.seed)[0]
                return self._features_of(x[idx]), x.shape[0], tuple(x.shape[1:])

            self._ref = cached_reference(self.key, build, (K_PR, K_DC), self.knn_n, self.cache, prefix="images")
        return self._ref

    def score(self, feats: torch.Tensor) -> dict[str, float]:
        """The metrics of sample features ``(n, D)`` against the reference."""
        ref = self.reference()
        if feats.shape[1] != ref.features.shape[1]:
            raise ValueError(f"the samples have {feats.shape[1]} features each, the reference {ref.features.shape[1]}")
        return distance_scores(feats, ref.features, ref.mu, ref.sigma, ref.radii[K_PR], ref.radii[K_DC], self.seed)

    def features(self, samples: SampleSource) -> torch.Tensor:
        """Features ``(n, D)`` of ``n`` samples from ``samples`` (see :func:`sample_chunks`)."""
        ref_shape = self._ref.image_shape if self._ref is not None else None
        out = []
        for x in sample_chunks(samples, self.n, self.batch_size, self.seed):
            if ref_shape is not None and tuple(x.shape[1:]) != ref_shape:
                raise ValueError(f"the samples are images of shape {tuple(x.shape[1:])} but the real set's are "
                                 f"{ref_shape}: load the real set at the samples' size and channels")
            out.append(self.extractor(x))
        return torch.cat(out)

    def evaluate(self, samples: SampleSource, with_floor: bool = True) -> dict[str, float]:
        """Metrics of ``n`` samples, plus the floor under ``real_`` keys if asked and the real set allows it."""
        self.reference()
        result = self.score(self.features(samples))
        if with_floor:
            result.update({f"real_{k}": v for k, v in self.floor().items()})
        return result

    def floor(self) -> dict[str, float]:
        """The metrics of ``n`` real images disjoint from the reference; ``{}`` when the set has fewer than ``2 n``."""
        ref = self.reference()
        if ref.real_size < 2 * self.n:
            return {}

        def compute() -> dict[str, Any]:
            x = self._real_images()
            floor_idx = real_subset(x.shape[0], self.n, self.seed)[1]
            assert floor_idx is not None
            return self.score(self._features_of(x[floor_idx]))

        return {k: float(v) for k, v in cached_json(self.key, compute, self.cache, prefix="images_floor").items()}

    @property
    def protocol(self) -> dict[str, Any]:
        """How the figures were computed, to record beside them (n, the real subset, extractor, resizing)."""
        ref = self.reference()
        size, m = ref.real_size, min(self.n, self.knn_n)
        subset = f"all {size} images" if self.n == size else f"{self.n} of {size}, drawn with seed {self.seed}"
        return {
            "n_fake": self.n, "n_real": self.n, "real_source": self.source, "real_set_size": size,
            "real_subset": subset,
            "image_shape": list(ref.image_shape), "features": self.extractor.describe(),
            "resize": "none: the extractor reads the images at their own size",
            "kid": {"subsets": KID_SUBSETS, "subset_size": min(KID_SUBSET_SIZE, self.n), "kernel": "(x.y / D + 1)^3"},
            "precision_recall": {"k": K_PR, "n": m}, "density_coverage": {"k": K_DC, "n": m},
            "seed": self.seed,
            "floor": (f"{self.n} other real images of the same set" if size >= 2 * self.n
                      else f"none: the real set has {size} < 2n = {2 * self.n} images"),
        }
