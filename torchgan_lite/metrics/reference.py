"""Reference statistics of a real image set, computed once and cached on disk, never trusted blindly.

Scoring every few epochs should cost the fake side only. The real side (its features,
their mean and covariance, the k-NN radii of precision/recall and density/coverage) is
computed once per *key* and kept in :func:`~torchgan_lite.utils.paths.cache_dir`:

- the data source: a description or fingerprint of the real set the caller supplies
  (a folder's listing, a file's sha256, a set name and split);
- the extractor's fingerprint (its weights' hash, or the TorchScript file's sha256);
- ``n``, the seed that drew the reference subset, and the protocol's other choices.

The file's name is a hash of the key, and the key is stored inside it. On load the stored
key must equal the asked one and every array must have the shape and finiteness the key
implies; a file that fails any check (stale, torn, foreign, corrupt) is rebuilt with a
warning, never used. Files are written through the package's one atomic writer.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from torchgan_lite.metrics.frechet import feature_statistics
from torchgan_lite.metrics.precision_recall import knn_radii
from torchgan_lite.utils.atomic import atomic_open
from torchgan_lite.utils.paths import cache_dir

__all__ = ["ReferenceStats", "cached_json", "cached_reference", "key_digest"]

CACHE_VERSION = 1
_MEMORY: dict[str, ReferenceStats] = {}  # loaded in this process, by file name


def key_digest(key: dict[str, Any]) -> str:
    """The sha256 of ``key`` as canonical JSON (sorted keys): the cache file's name."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class ReferenceStats:
    """What the metrics need of the real set.

    Attributes:
        features: ``(n, D)`` float32 features of the reference images (KID reads them all).
        mu: ``(D,)`` float64 mean of ``features``.
        sigma: ``(D, D)`` float64 unbiased covariance.
        radii: ``{k: (m,)}`` float64 distance of each of the first ``m`` rows to its k-th
            nearest other row among them (precision/recall k=3, density/coverage k=5).
        real_size: Images in the whole real set the reference was drawn from.
        image_shape: ``(C, H, W)`` of the real images.
        key: The cache key these were computed for.
    """

    features: torch.Tensor
    mu: torch.Tensor
    sigma: torch.Tensor
    radii: dict[int, torch.Tensor]
    real_size: int
    image_shape: tuple[int, ...]
    key: dict[str, Any]


def _invalid(saved: object, key: dict[str, Any], ks: tuple[int, ...], m: int) -> str | None:
    """Why a loaded payload cannot be used for ``key`` (None: it can)."""
    if not isinstance(saved, dict):
        return f"it holds a {type(saved).__name__}, not a dict"
    if saved.get("version") != CACHE_VERSION:
        return f"cache version {saved.get('version')!r}, not {CACHE_VERSION}"
    if saved.get("key") != json.loads(json.dumps(key, sort_keys=True, default=str)):
        return "it was computed for another data source, extractor or protocol (stale)"
    feats, mu, sigma, radii = (saved.get(k) for k in ("features", "mu", "sigma", "radii"))
    if not all(isinstance(t, torch.Tensor) for t in (feats, mu, sigma)) or not isinstance(radii, dict):
        return "arrays are missing"
    assert isinstance(feats, torch.Tensor) and isinstance(mu, torch.Tensor) and isinstance(sigma, torch.Tensor)
    n, d = key["n"], feats.shape[-1]
    if feats.shape != (n, d) or mu.shape != (d,) or sigma.shape != (d, d):
        return f"features {tuple(feats.shape)}, mean {tuple(mu.shape)}, covariance {tuple(sigma.shape)} for n={n}"
    if sorted(radii) != sorted(ks) or any(not isinstance(radii[k], torch.Tensor) or radii[k].shape != (m,)
                                          for k in ks):
        return "k-NN radii are missing or of the wrong length"
    if not all(bool(torch.isfinite(t).all()) for t in (feats, mu, sigma, *radii.values())):
        return "it holds NaN or infinite values"
    if not isinstance(saved.get("real_size"), int) or not isinstance(saved.get("image_shape"), list):
        return "the real set's size or image shape is missing"
    return None


def cached_reference(key: dict[str, Any], build: Callable[[], tuple[torch.Tensor, int, tuple[int, ...]]],
                     ks: tuple[int, ...] = (3, 5), knn_n: int = 10000, cache: bool = True,
                     prefix: str = "ref") -> ReferenceStats:
    """The reference statistics for ``key``: from memory, else a valid cache file, else built and cached.

    Args:
        key: What identifies them (JSON-serialisable; must hold ``"n"``).
        build: Computes ``(features (n, D), real_size, image_shape)`` on a miss (it may load the real set).
        ks: The k of each set of k-NN radii.
        knn_n: Radii are computed among the first ``min(n, knn_n)`` rows.
        cache: Read and write the disk cache (False: compute, keep in memory only).
        prefix: Start of the cache file's name.
    """
    m = min(int(key["n"]), knn_n)
    path = cache_dir() / f"{prefix}_{key_digest(key)[:24]}.pt"
    if str(path) in _MEMORY and _MEMORY[str(path)].key == key:
        return _MEMORY[str(path)]
    if cache and path.is_file():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            why = _invalid(saved, key, ks, m)
        except Exception as err:  # a torn or foreign file
            why = f"unreadable ({str(err).splitlines()[0][:120] if str(err) else type(err).__name__})"
        if why is None:
            ref = ReferenceStats(saved["features"], saved["mu"], saved["sigma"],
                                 {int(k): v for k, v in saved["radii"].items()}, saved["real_size"],
                                 tuple(saved["image_shape"]), key)
            _MEMORY[str(path)] = ref
            return ref
        warnings.warn(f"rebuilding the reference statistics in {path}: {why}", RuntimeWarning, stacklevel=3)
    feats, real_size, image_shape = build()
    feats = feats.float().cpu()  # (n, D)
    if feats.shape[0] != key["n"]:
        raise ValueError(f"the reference needs features of {key['n']} images, got {feats.shape[0]}")
    mu, sigma = feature_statistics(feats)  # (D,), (D, D)
    radii = {k: knn_radii(feats[:m], k) for k in ks}  # (m,) each
    ref = ReferenceStats(feats, mu, sigma, radii, int(real_size), tuple(int(s) for s in image_shape), key)
    if cache:
        payload = {"version": CACHE_VERSION, "key": json.loads(json.dumps(key, sort_keys=True, default=str)),
                   "features": feats, "mu": mu, "sigma": sigma, "radii": radii, "real_size": ref.real_size,
                   "image_shape": list(ref.image_shape)}
        try:
            with atomic_open(path, "wb", what="write the reference statistics") as f:
                torch.save(payload, f)
        except OSError as err:
            warnings.warn(f"could not cache the reference statistics: {err}", RuntimeWarning, stacklevel=3)
    _MEMORY[str(path)] = ref
    return ref


def cached_json(key: dict[str, Any], compute: Callable[[], dict[str, Any]], cache: bool = True,
                prefix: str = "floor") -> dict[str, Any]:
    """A small JSON result (e.g. a real-data floor) for ``key``: a valid cache file, else computed and cached."""
    path = cache_dir() / f"{prefix}_{key_digest(key)[:24]}.json"
    canonical = json.loads(json.dumps(key, sort_keys=True, default=str))
    if cache and path.is_file():
        try:
            saved = json.loads(path.read_text())
            if (isinstance(saved, dict) and saved.get("version") == CACHE_VERSION and saved.get("key") == canonical
                    and isinstance(saved.get("value"), dict)):
                return dict(saved["value"])
            why = "stale or foreign"
        except (OSError, ValueError) as err:
            why = f"unreadable ({err})"
        warnings.warn(f"recomputing {path}: {why}", RuntimeWarning, stacklevel=3)
    value = compute()
    if cache:
        text = json.dumps({"version": CACHE_VERSION, "key": canonical, "value": value}, indent=1)
        try:
            with atomic_open(path, "w", what="write the cache") as f:
                f.write(text)
        except OSError as err:
            warnings.warn(f"could not cache {path.name}: {err}", RuntimeWarning, stacklevel=3)
    return value
