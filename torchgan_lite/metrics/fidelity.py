"""The field's standard metrics through torch-fidelity: Inception FID, KID and IS, and its DINOv2 and CLIP.

Published GAN figures (StudioGAN's, mimicry's, pytorch-gan-collections' CIFAR-10 tables)
are Inception-v3 FID/KID/IS computed the way torch-fidelity computes them: its port of the
TensorFlow Inception weights, its TF1-compatible bilinear resize to 299 x 299, float32,
KID over 100 subsets of 1000. No port of ours could promise the same digits, so this module
calls ``torch_fidelity.calculate_metrics`` itself (``pip install torchgan_lite[fid]``) on the
inputs it documents: ``torch.utils.data.Dataset`` s of uint8 ``(3, H, W)`` images.

- Samples in [-1, 1] become uint8 as a PNG writer would (``floor((x + 1) / 2 * 255 + 0.5)``,
  torchvision's ``save_image``); one channel is repeated to three (what torch-fidelity does
  to grayscale PNGs).
- The real set's features are cached by torch-fidelity under a name that hashes the data
  source, ``n``, the extractor and torch-fidelity's version, in ``cache_dir()/torch_fidelity``;
  a manifest of their sha256 is written beside them, and files that do not match it are
  deleted before torch-fidelity looks, so a stale or corrupt cache is rebuilt, never trusted.
- Extractors by short name: ``inception`` (``inception-v3-compat``, the FID of papers),
  ``dinov2`` (``dinov2-vit-l-14``, FD_DINOv2 of Stein et al. 2023), ``clip``
  (``clip-vit-b-32``, clean-fid's CLIP FID); any name torch-fidelity registers works too.
- Offline without cached weights, :class:`WeightsUnavailableError` says in one line where
  torch-fidelity keeps them and the command that fetches them once on a machine with internet.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import http.client
import importlib
import io
import json
import os
import urllib.error
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from torchgan_lite.metrics.images import RealImages, SampleSource, real_subset, sample_chunks, to_float_images
from torchgan_lite.metrics.reference import cached_json, key_digest
from torchgan_lite.utils.atomic import atomic_open
from torchgan_lite.utils.checks import check_bool, check_int, describe
from torchgan_lite.utils.paths import cache_dir
from torchgan_lite.utils.runtime import resolve_device

__all__ = ["FIDELITY_EXTRACTORS", "FidelityEvaluator", "WeightsUnavailableError", "fetch_command",
           "fidelity_extractor_name", "fidelity_unavailable_reason", "is_fidelity_name", "to_uint8_rgb",
           "weights_location"]

FIDELITY_EXTRACTORS = {"inception": "inception-v3-compat", "dinov2": "dinov2-vit-l-14", "clip": "clip-vit-b-32"}
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)
_KEYS = {"frechet_inception_distance": "fd", "kernel_inception_distance_mean": "kid_mean",
         "kernel_inception_distance_std": "kid_std", "inception_score_mean": "is_mean",
         "inception_score_std": "is_std"}


class WeightsUnavailableError(RuntimeError):
    """torch-fidelity's extractor weights are not cached here and cannot be downloaded (offline)."""


def _tf() -> Any:
    """The torch_fidelity module (imported on first use: an optional dependency)."""
    try:
        return importlib.import_module("torch_fidelity")
    except ImportError:
        raise ImportError("the Inception, DINOv2 and CLIP metrics need torch-fidelity: "
                          "pip install 'torchgan_lite[fid]' (or pip install torch-fidelity)") from None


def fidelity_unavailable_reason() -> str | None:
    """None when torch-fidelity can be imported, else why not (a line for a skip or an error)."""
    try:
        _tf()
    except ImportError as err:
        return str(err)
    return None


def is_fidelity_name(name: object) -> bool:
    """Whether ``name`` names a torch-fidelity extractor (a short name, or one torch-fidelity registers)."""
    if not isinstance(name, str):
        return False
    if name in FIDELITY_EXTRACTORS:
        return True
    return fidelity_unavailable_reason() is None and name in _tf().registry.FEATURE_EXTRACTORS_REGISTRY


def fidelity_extractor_name(name: str) -> str:
    """torch-fidelity's name for ``name`` (``inception``, ``dinov2``, ``clip``, or one of its own names)."""
    if not isinstance(name, str):
        raise TypeError(f"features must be a str naming a torch-fidelity extractor, got {describe(name)}")
    full = FIDELITY_EXTRACTORS.get(name, name)
    registry = _tf().registry.FEATURE_EXTRACTORS_REGISTRY
    if full not in registry:
        raise ValueError(f"features={name!r} is not a torch-fidelity extractor: expected one of "
                         f"{sorted(FIDELITY_EXTRACTORS)} or {sorted(registry)}")
    return str(full)


def weights_location(name: str) -> Path | None:
    """The file (or folder) torch-fidelity loads the weights of extractor ``name`` from; None: not known."""
    full, hub = fidelity_extractor_name(name), Path(torch.hub.get_dir())
    tf = _tf()
    if full == "inception-v3-compat":
        return hub / "checkpoints" / os.path.basename(tf.feature_extractor_inceptionv3.URL_INCEPTION_V3)
    if full.startswith("clip-"):
        return hub / "checkpoints" / f"{full}-{tf.feature_extractor_clip.MODEL_METADATA[full]['hash']}.pt"
    if full.startswith("dinov2-"):
        return hub / "checkpoints" / f"{tf.feature_extractor_dinov2.MODEL_METADATA[full]}_pretrain.pth"
    return None


def _layer(full: str, metric: str = "fid") -> str:
    return str(_tf().registry.FEATURE_EXTRACTORS_REGISTRY[full].get_default_feature_layer_for_metric(metric))


def fetch_command(name: str) -> str:
    """A shell command that makes torch-fidelity download extractor ``name``'s weights into its cache."""
    full = fidelity_extractor_name(name)
    return (f"python -c \"from torch_fidelity.utils import create_feature_extractor as c; "
            f"c('{full}', ['{_layer(full)}'], cuda=False)\"")


def to_uint8_rgb(images: torch.Tensor) -> torch.Tensor:
    """Images ``(N, 1 or 3, H, W)`` (floats in [-1, 1], or uint8) as uint8 ``(N, 3, H, W)``, rounded as a PNG."""
    x = images if images.dtype == torch.uint8 else \
        ((to_float_images(images) + 1) / 2 * 255 + 0.5).floor().clamp(0, 255).to(torch.uint8)
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"torch-fidelity's extractors take RGB (3 channels) or grayscale (1, repeated) images "
                         f"(N, C, H, W), got shape {tuple(x.shape)}")
    return x.expand(-1, 3, -1, -1).contiguous() if x.shape[1] == 1 else x.contiguous()


class _Images(Dataset[torch.Tensor]):
    """uint8 ``(3, H, W)`` images for torch-fidelity, from a tensor or (lazily) a callable."""

    def __init__(self, images: torch.Tensor | None = None, load: Any = None) -> None:
        self._x, self._load = images, load

    def _get(self) -> torch.Tensor:
        if self._x is None:
            self._x = to_uint8_rgb(self._load())
        return self._x

    def __len__(self) -> int:
        return int(self._get().shape[0])

    def __getitem__(self, i: int) -> torch.Tensor:
        return self._get()[i]  # (3, H, W)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class FidelityEvaluator:
    """FID, KID and IS of samples through torch-fidelity's own code path; the real side cached.

    Args:
        real: The real set: uint8 ``(N, C, H, W)`` or floats in [-1, 1] (C = 1 or 3), a callable
            returning it (called only when the cache misses), or the name of a dataset
            torch-fidelity registers (``"cifar10-train"``: the whole set, its own download).
        features: ``"inception"`` (default), ``"dinov2"``, ``"clip"`` or any torch-fidelity extractor name.
        source: What the real set is (keys the cache). None: the sha256 of ``real`` (a tensor) or its name.
        n: Samples per evaluation, and real images drawn from the set (not for a registered name).
        batch_size: Images per extractor call (torch-fidelity's default is 64).
        device: ``cuda`` runs torch-fidelity with ``cuda=True``; anything else on the CPU.
        seed: The reference subset and a generator's noise.
        isc: Also the Inception Score (default: only with the Inception extractor).
        fidelity_seed: torch-fidelity's ``rng_seed`` (KID subsets, IS splits); its default 2020.
        cache: Keep the real set's features in torch-fidelity's cache.
    """

    def __init__(self, real: RealImages | str, features: str = "inception", *, source: str | None = None,
                 n: int = 10000, batch_size: int = 64, device: torch.device | str = "cpu", seed: int = 0,
                 isc: bool | None = None, fidelity_seed: int = 2020, cache: bool = True) -> None:
        self.name = fidelity_extractor_name(features)
        self.n = check_int("n", n, 2)
        self.batch_size = check_int("batch_size", batch_size)
        self.seed = check_int("seed", seed, 0)
        self.fidelity_seed = check_int("fidelity_seed", fidelity_seed, 0)
        self.cache = check_bool("cache", cache)
        self.isc = (self.name == "inception-v3-compat") if isc is None else check_bool("isc", isc)
        self.device = resolve_device(device)
        self._registered = isinstance(real, str)
        if isinstance(real, str):
            if real not in _tf().registry.DATASETS_REGISTRY:
                raise ValueError(f"real={real!r} is not a dataset torch-fidelity registers "
                                 f"({sorted(_tf().registry.DATASETS_REGISTRY)}); pass the images instead")
            source = source or real
        elif not isinstance(real, torch.Tensor) and not callable(real):
            raise TypeError(f"real must be an image tensor, a callable returning one, or a torch-fidelity dataset "
                            f"name, got {describe(real)}")
        elif source is None:
            if not isinstance(real, torch.Tensor):
                raise TypeError("source must name the real set (it keys the cache) when real is a callable")
            source = "sha256:" + hashlib.sha256(real.detach().cpu().contiguous().numpy().tobytes()).hexdigest()
        if not isinstance(source, str) or not source:
            raise TypeError(f"source must be a non-empty str describing the real set, got {describe(source)}")
        self.source = source
        self._real = real
        self._loaded: torch.Tensor | None = None
        self.metric_names: tuple[str, ...] = ("fd", "kid_mean", "kid_std") + (("is_mean", "is_std") if self.isc
                                                                              else ())

    @property
    def key(self) -> dict[str, Any]:
        """What the real side is cached by."""
        return {"kind": "torch-fidelity", "source": self.source, "extractor": self.name,
                "torch_fidelity": str(_tf().__version__), "n": None if self._registered else self.n,
                "seed": None if self._registered else self.seed}

    def _real_images(self) -> torch.Tensor:
        if self._loaded is None:
            x = self._real() if callable(self._real) and not isinstance(self._real, torch.Tensor) else self._real
            if not isinstance(x, torch.Tensor) or x.dim() != 4:
                raise ValueError(f"the real set must be a (N, C, H, W) tensor, got {describe(x)}")
            self._loaded = to_uint8_rgb(x)
        return self._loaded

    def _reference_input(self) -> tuple[Any, str]:
        """input2 for torch-fidelity and its cache name."""
        if self._registered:
            return self._real, str(self._real)

        def load() -> torch.Tensor:
            x = self._real_images()
            return x[real_subset(x.shape[0], self.n, self.seed)[0]]

        return _Images(load=load), f"torchgan_lite-{key_digest(self.key)[:24]}"

    @staticmethod
    def _cached_files(root: Path, name: str) -> list[Path]:
        """torch-fidelity's cache files of input ``name`` (``NAME-EXTRACTOR-features-LAYER.pt``, ``...-stat-...``)."""
        return sorted(Path(p) for p in glob.glob(os.path.join(glob.escape(str(root)), f"{glob.escape(name)}-*.pt")))

    def _verify_cache(self, root: Path, name: str) -> None:
        """Delete torch-fidelity's cached files of ``name`` unless they match the manifest written beside them."""
        manifest = root / f"{name}.manifest.json"
        files = {p.name: p for p in self._cached_files(root, name)}
        why = None
        try:
            saved = json.loads(manifest.read_text()) if manifest.is_file() else None
        except (OSError, ValueError):
            saved = None
        expected = json.loads(json.dumps(self.key, sort_keys=True))
        if files and (not isinstance(saved, dict) or saved.get("key") != expected):
            why = "no manifest, or one for another source, extractor or torch-fidelity version"
        elif files:
            listed = saved.get("files", {}) if isinstance(saved, dict) else {}
            bad = [f for f, p in files.items() if listed.get(f) != _sha(p)]
            why = f"{', '.join(bad)} differ from their recorded sha256" if bad else None
        if why is not None:
            warnings.warn(f"rebuilding torch-fidelity's cached features of the real set in {root}: {why}",
                          RuntimeWarning, stacklevel=4)
            for p in [*files.values(), manifest]:
                with contextlib.suppress(OSError):
                    p.unlink()

    def _record_cache(self, root: Path, name: str) -> None:
        payload = {"key": json.loads(json.dumps(self.key, sort_keys=True)),
                   "files": {p.name: _sha(p) for p in self._cached_files(root, name)}}
        try:
            with atomic_open(root / f"{name}.manifest.json", "w", what="write the cache manifest") as f:
                f.write(json.dumps(payload, indent=1))
        except OSError as err:
            warnings.warn(f"could not record torch-fidelity's cache: {err}", RuntimeWarning, stacklevel=3)

    def _offline(self, err: BaseException) -> WeightsUnavailableError:
        where = weights_location(self.name)
        hub = Path(torch.hub.get_dir())
        if where is not None and where.exists():  # the weights are here: what failed was the dataset download
            return WeightsUnavailableError(f"torch-fidelity could not download the real set {self._real!r} "
                                           f"({err}); pass the real images instead")
        return WeightsUnavailableError(
            f"the {self.name} weights torch-fidelity needs are not cached in {hub} and cannot be downloaded here "
            f"({str(err).splitlines()[0][:160]}): on a machine with internet run {fetch_command(self.name)} "
            f"and copy its torch hub folder (~/.cache/torch/hub, or $TORCH_HOME/hub) to {hub} here")

    @contextlib.contextmanager
    def _quiet_offline(self) -> Iterator[None]:
        """torch-fidelity's own prints silenced (its download line among them); a failed download as one line."""
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                yield
        except _NETWORK_ERRORS as err:
            raise self._offline(err) from None
        except RuntimeError as err:
            if "internet" in str(err).lower():  # torch.hub.load's words for an offline repo fetch (DINOv2)
                raise self._offline(err) from None
            raise

    def check_weights(self) -> None:
        """Make sure the extractor's weights are here: cached already, or downloaded now by torch-fidelity.

        Raises:
            WeightsUnavailableError: not cached and not downloadable (offline), in one line saying how to fetch them.
        """
        where = weights_location(self.name)
        if where is not None and where.exists():
            return
        with self._quiet_offline():
            _tf().utils.create_feature_extractor(self.name, [_layer(self.name)], cuda=False, verbose=False)

    def evaluate_uint8(self, fake: torch.Tensor) -> dict[str, float]:
        """torch-fidelity's metrics of uint8 samples ``(N, 1 or 3, H, W)`` against the real set."""
        fake = to_uint8_rgb(fake)
        input2, name = self._reference_input()
        root = cache_dir() / "torch_fidelity"
        root.mkdir(parents=True, exist_ok=True)
        if self.cache:
            self._verify_cache(root, name)
        n_real = None if self._registered else self.n
        subset = min(1000, fake.shape[0], n_real or 1000)
        kwargs = {"input1": _Images(fake), "input2": input2, "cuda": self.device.type == "cuda",
                  "batch_size": self.batch_size, "fid": True, "kid": True, "isc": self.isc,
                  "feature_extractor": self.name, "kid_subset_size": subset, "rng_seed": self.fidelity_seed,
                  "cache": self.cache, "cache_root": str(root), "save_cpu_ram": True, "verbose": False}
        if not self._registered:
            kwargs["input2_cache_name"] = name
        cuda = torch.cuda.device(self.device) if self.device.type == "cuda" else contextlib.nullcontext()
        with cuda, self._quiet_offline():
            out = _tf().calculate_metrics(**kwargs)
        if self.cache:
            self._record_cache(root, name)
        return {_KEYS[k]: float(v) for k, v in out.items() if k in _KEYS}

    def evaluate(self, samples: SampleSource, with_floor: bool = False) -> dict[str, float]:
        """torch-fidelity's metrics of ``n`` samples from ``samples`` (a generator, ``sample(k)``, a tensor)."""
        chunks = [to_uint8_rgb(x) for x in sample_chunks(samples, self.n, 500, self.seed)]
        result = self.evaluate_uint8(torch.cat(chunks))
        if with_floor:
            result.update({f"real_{k}": v for k, v in self.floor().items()})
        return result

    def floor(self) -> dict[str, float]:
        """The metrics of ``n`` real images disjoint from the reference; ``{}`` when the set is too small."""
        if self._registered:
            return {}

        def compute() -> dict[str, Any]:
            x = self._real_images()
            floor_idx = real_subset(x.shape[0], self.n, self.seed)[1]
            return {} if floor_idx is None else self.evaluate_uint8(x[floor_idx])

        return {k: float(v) for k, v in cached_json(self.key, compute, self.cache, prefix="fidelity_floor").items()}

    @property
    def protocol(self) -> dict[str, Any]:
        """How the figures were computed: torch-fidelity's extractor, resize, n, the real subset."""
        tf = _tf()
        size = None if self._registered else int(self._real_images().shape[0])
        return {
            "n_fake": self.n, "n_real": "the whole set" if size is None else self.n, "real_source": self.source,
            "real_set_size": size,
            "real_subset": ("the whole registered set" if size is None else f"all {size} images" if self.n == size
                            else f"{self.n} of {size}, drawn with seed {self.seed}"),
            "features": {"name": self.name, "layer": _layer(self.name), "implementation": "torch-fidelity",
                         "torch_fidelity": str(tf.__version__)},
            "resize": "torch-fidelity's own: bilinear, TF1-compatible, to the extractor's input size, from uint8",
            "quantisation": "samples rounded to uint8 as a PNG writer does; 1 channel repeated to 3",
            "kid": {"subsets": 100, "subset_size": min(1000, self.n, size or 1000)},
            "rng_seed": self.fidelity_seed, "seed": self.seed,
        }
