"""Feature extractors for the distance metrics: any ``nn.Module`` from images to ``(N, D)`` features.

FD, KID, precision/recall and density/coverage compare two sets of feature vectors; what
the features are is the extractor's business. A :class:`FeatureExtractor` wraps a module
that maps a float batch ``(B, C, H, W)`` in [-1, 1] (the generator's scale) to ``(B, D)``,
with what identifies it (a name and a fingerprint of its weights, which keys the cached
reference statistics) and, where known, the image shape it takes. Three ways to get one:

- :func:`mnist_extractor`: the shipped MNIST classifier's 128 penultimate activations
  (:mod:`torchgan_lite.metrics.classifier`), for ``(1, 28, 28)`` images.
- :func:`load_extractor`: a TorchScript file (``torch.jit.save(torch.jit.script(net), PATH)``)
  or a ``torch.export`` program (``torch.export.save``); the fingerprint is the file's sha256.
- :func:`as_extractor`: any of the above, ``"mnist"``, a path, or a plain ``nn.Module``
  (fingerprinted by its class and weights).

Every output is checked: a tensor, 2-D, one row per image, finite; anything else is
refused naming the extractor. Images an extractor cannot take (channels, size) get one
error saying what it takes and how to pass another (``--features``), never torch's trace.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchgan_lite.metrics.classifier import CLASSIFIER_SHA256, file_sha256, load_classifier
from torchgan_lite.utils.checks import check_int, check_path, describe
from torchgan_lite.utils.runtime import resolve_device

__all__ = ["FeatureExtractor", "as_extractor", "load_extractor", "mnist_extractor", "module_fingerprint"]

_HOW = ("pass --features PATH (a TorchScript module mapping (N, C, H, W) images in [-1, 1] to (N, D) features), "
        "--features inception (torch-fidelity), or features=<nn.Module> in Python")


def module_fingerprint(module: nn.Module) -> str:
    """The sha256 of a module's class, TorchScript code (if any) and every parameter and buffer (names, dtypes,
    shapes, bytes): the same network with the same weights gives the same string."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be an nn.Module, got {describe(module)}")
    h = hashlib.sha256(f"{type(module).__module__}.{type(module).__qualname__}".encode())
    code = getattr(module, "code", None)  # a ScriptModule's forward, as TorchScript source
    if isinstance(code, str):
        h.update(code.encode())
    for name, t in sorted(module.state_dict().items()):
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _last_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


class FeatureExtractor:
    """An image-to-feature network the metrics read, with what identifies it.

    Args:
        module: Maps a float batch ``(B, C, H, W)`` in [-1, 1] to features ``(B, D)``. Run in
            eval mode without gradients; do not train it while it is used.
        name: How results and errors name it (default: the module's class name).
        fingerprint: A string that changes whenever its weights do (keys cached reference
            statistics); None: :func:`module_fingerprint` of ``module``.
        input_shape: The ``(C, H, W)`` it takes, checked before any image reaches it; None:
            any shape, found out by trying (an error on the first batch names the shape).
    """

    def __init__(self, module: nn.Module, name: str | None = None, fingerprint: str | None = None,
                 input_shape: tuple[int, int, int] | None = None) -> None:
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be an nn.Module mapping (N, C, H, W) images to (N, D) features, "
                            f"got {describe(module)}")
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ValueError(f"name must be a non-empty str or None, got {describe(name)}")
        if fingerprint is not None and (not isinstance(fingerprint, str) or not fingerprint):
            raise ValueError(f"fingerprint must be a non-empty str or None, got {describe(fingerprint)}")
        if input_shape is not None:
            if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3:
                raise ValueError(f"input_shape must be (C, H, W) or None, got {describe(input_shape)}")
            input_shape = (check_int("input_shape[0]", input_shape[0]), check_int("input_shape[1]", input_shape[1]),
                           check_int("input_shape[2]", input_shape[2]))
        with contextlib.suppress(NotImplementedError):  # an exported program's module has no train/eval modes
            module.eval()
        self.module = module
        self.name = name if name is not None else type(module).__name__
        self.fingerprint = fingerprint if fingerprint is not None else module_fingerprint(module)
        self.input_shape = input_shape
        self.feature_dim: int | None = None  # known after the first batch

    @property
    def device(self) -> torch.device:
        """Where the module's weights are (the CPU for one without any)."""
        for t in (*self.module.parameters(), *self.module.buffers()):
            return t.device
        return torch.device("cpu")

    def to(self, device: torch.device | str) -> FeatureExtractor:
        """Move the module to ``device``; returns self."""
        dev = resolve_device(device)
        if isinstance(self.module, _MNISTFeatures):  # the shared classifier stays put: take the one on dev
            self.module = _MNISTFeatures(dev)
        else:
            self.module.to(dev)
        return self

    def describe(self) -> dict[str, Any]:
        """What the protocol records: name, fingerprint, input shape, feature width."""
        return {"name": self.name, "fingerprint": self.fingerprint,
                "input_shape": None if self.input_shape is None else list(self.input_shape),
                "feature_dim": self.feature_dim}

    def check_images(self, shape: tuple[int, ...]) -> None:
        """Refuse images of ``shape`` ``(C, H, W)`` this extractor does not take, saying what it takes."""
        if self.input_shape is not None and tuple(shape) != self.input_shape:
            raise ValueError(f"the feature extractor {self.name!r} takes images of shape {self.input_shape}, but "
                             f"these are {tuple(shape)}: {_HOW}")

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Features ``(B, D)`` float32 on the CPU of a float batch ``(B, C, H, W)`` in [-1, 1]."""
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            raise ValueError(f"images must be a (B, C, H, W) tensor, got {describe(images)}")
        self.check_images(tuple(images.shape[1:]))
        x = images.to(device=self.device, dtype=torch.float32)  # (B, C, H, W)
        try:
            out = self.module(x)
        except (RuntimeError, ValueError, TypeError, IndexError) as err:
            if isinstance(err, torch.OutOfMemoryError):  # not a shape mistake: lower the batch size
                raise
            raise ValueError(f"the feature extractor {self.name!r} failed on images of shape "
                             f"{tuple(images.shape[1:])} ({_last_line(err)}); if it takes other images, "
                             f"{_HOW}") from None
        return self._checked(out, images.shape[0])

    def _checked(self, out: object, n: int) -> torch.Tensor:
        if not isinstance(out, torch.Tensor):
            raise ValueError(f"the feature extractor {self.name!r} must return a tensor of features (N, D), "
                             f"got {describe(out)}")
        if out.dim() != 2 or out.shape[0] != n:
            raise ValueError(f"the feature extractor {self.name!r} must return features of shape ({n}, D) for "
                             f"{n} images, got {tuple(out.shape)}")
        if not out.is_floating_point():
            raise ValueError(f"the feature extractor {self.name!r} must return floating-point features, "
                             f"got dtype {out.dtype}")
        if not bool(torch.isfinite(out).all()):
            raise ValueError(f"the feature extractor {self.name!r} returned NaN or infinite features")
        if self.feature_dim is None:
            self.feature_dim = int(out.shape[1])
        elif out.shape[1] != self.feature_dim:
            raise ValueError(f"the feature extractor {self.name!r} returned {out.shape[1]} features per image "
                             f"after {self.feature_dim} before: its width must not change")
        return out.detach().float().cpu()

    def extract(self, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """Features ``(N, D)`` float32 (CPU) of ``images`` ``(N, C, H, W)``, ``batch_size`` at a time."""
        check_int("batch_size", batch_size)
        return torch.cat([self(images[i : i + batch_size]) for i in range(0, images.shape[0], batch_size)])


class _MNISTFeatures(nn.Module):
    def __init__(self, device: torch.device) -> None:
        super().__init__()
        self.classifier = load_classifier(device)  # the shared, checksum-checked instance

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.features_and_logits(x)[0]  # (B, 128)


def mnist_extractor(device: torch.device | str = "cpu") -> FeatureExtractor:
    """The shipped MNIST classifier's 128 features of ``(1, 28, 28)`` images (fingerprint: its sha256)."""
    return FeatureExtractor(_MNISTFeatures(resolve_device(device)), name="mnist", fingerprint=CLASSIFIER_SHA256,
                            input_shape=(1, 28, 28))


def load_extractor(path: str | os.PathLike[str], device: torch.device | str = "cpu",
                   input_shape: tuple[int, int, int] | None = None) -> FeatureExtractor:
    """A feature extractor saved as a TorchScript module or a ``torch.export`` program.

    The module must map a float batch ``(N, C, H, W)`` in [-1, 1] to ``(N, D)`` features; that
    is checked on every batch. Its name is the file's name, its fingerprint the file's sha256.

    Args:
        path: The file (``torch.jit.save`` or ``torch.export.save``).
        device: Where it runs.
        input_shape: The ``(C, H, W)`` it takes, if known (else found out on the first batch).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is neither a TorchScript module nor an exported program.
    """
    file = check_path("features", path)
    if not file.is_file():
        raise FileNotFoundError(f"features={os.fspath(path)!r}: no such file (a TorchScript module saved "
                                "with torch.jit.save)")
    how = "save one with torch.jit.save(torch.jit.script(net), PATH)"
    try:
        with zipfile.ZipFile(file) as archive:  # both formats are zip archives; tell them apart by their records
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as err:
        raise ValueError(f"features={os.fspath(path)!r} is not a TorchScript module (not a zip archive: "
                         f"{err}); {how}") from None
    exported = any(n.endswith("/archive_format") for n in names)
    if not exported and not any(n.endswith("/constants.pkl") for n in names):
        raise ValueError(f"features={os.fspath(path)!r} is not a TorchScript module (a zip archive without its "
                         f"code: torch.save of weights or of a pickled module?); {how}")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.* is deprecated", category=FutureWarning)
        try:
            module: nn.Module = (torch.export.load(str(file)).module() if exported
                                 else torch.jit.load(str(file), map_location="cpu"))
        except Exception as err:  # a damaged archive
            raise ValueError(f"features={os.fspath(path)!r} could not be loaded as a TorchScript module "
                             f"({_last_line(err)[:200]}); {how}") from None
    return FeatureExtractor(module.to(resolve_device(device)), name=Path(file).name, fingerprint=file_sha256(file),
                            input_shape=input_shape)


def as_extractor(features: FeatureExtractor | nn.Module | str | os.PathLike[str] | None,
                 device: torch.device | str = "cpu") -> FeatureExtractor:
    """``features`` as a :class:`FeatureExtractor` on ``device``: one already, ``None``/``"mnist"`` (the shipped
    classifier), an ``nn.Module``, or the path of a TorchScript file."""
    if isinstance(features, FeatureExtractor):
        return features.to(device)
    if features is None or features == "mnist":
        return mnist_extractor(device)
    if isinstance(features, nn.Module):
        return FeatureExtractor(features.to(resolve_device(device)))
    if isinstance(features, (str, os.PathLike)):
        return load_extractor(features, device)
    raise TypeError(f"features must be a FeatureExtractor, an nn.Module, 'mnist' or the path of a TorchScript "
                    f"file, got {describe(features)}")
