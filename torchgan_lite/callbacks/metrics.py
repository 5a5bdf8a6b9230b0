"""MetricsCallback: score the generator every N epochs, on MNIST or any image set, into ``trainer.state.metrics``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from torchgan_lite.metrics.evaluator import METRIC_NAMES, MNISTEvaluator
from torchgan_lite.metrics.features import FeatureExtractor
from torchgan_lite.metrics.fidelity import FidelityEvaluator, is_fidelity_name
from torchgan_lite.metrics.images import ImageEvaluator, RealImages
from torchgan_lite.training.events import Event, RemovableHandle
from torchgan_lite.utils.checks import check_int, describe

if TYPE_CHECKING:
    from torchgan_lite.training.trainer import GANTrainer

__all__ = ["MetricsCallback"]

Features = FeatureExtractor | nn.Module | str | os.PathLike[str]


class MetricsCallback:
    """Scores samples from ``trainer.sample`` every ``every`` epochs, into ``trainer.state.metrics``.

    Two kinds of evaluation:

    - **MNIST** (``features`` and ``real`` None, the default): the floats ``fd``, ``kid_mean``,
      ``kid_std``, ``classifier_score``, ``coverage_kl``, ``classes_at_1pct``, ``precision``
      and ``recall`` of :class:`~torchgan_lite.metrics.evaluator.MNISTEvaluator`.
    - **Any images** (``real`` given): ``fd``, ``kid_mean``, ``kid_std``, ``precision``,
      ``recall``, ``density`` and ``coverage`` through any extractor
      (:class:`~torchgan_lite.metrics.images.ImageEvaluator`), or with ``features`` =
      ``"inception"``/``"dinov2"``/``"clip"`` torch-fidelity's ``fd``, ``kid_mean``, ``kid_std``
      (and ``is_mean``, ``is_std`` for Inception) (:class:`~torchgan_lite.metrics.fidelity.FidelityEvaluator`).
      The real side is computed once and cached, so each evaluation costs the samples only.

    :class:`~torchgan_lite.callbacks.progress.EpochLogger` prints the figures, ``HistoryCSV``,
    JSONL and TensorBoard loggers record them, checkpoints keep them; the real-data floor for
    the same ``n`` (when the real set allows one) is in :attr:`floor`, the latest full result
    in :attr:`last`, how it was computed in :attr:`protocol`.

    The samples come from one fixed noise bank drawn from the callback's own generator
    (seeded with ``seed``), passed to ``trainer.sample(k, z=...)`` in chunks: epochs are
    compared on the same noise, and the trainer's random stream is not disturbed. A
    conditional generator gets balanced labels (``i % num_classes``); an attached EMA
    generator is the one scored (as ``trainer.sample`` does by default).

    Args:
        every: Epochs between evaluations.
        n: Samples per evaluation.
        data_root: MNIST only: the folder holding ``MNIST/raw/``; None: ``$TORCHGAN_LITE_DATA``.
        batch_size: Samples generated and passed to the extractor at once.
        seed: Seeds the noise bank, the real subset and KID's subsets.
        features: The extractor: an ``nn.Module`` or ``FeatureExtractor`` mapping ``(B, C, H, W)``
            in [-1, 1] to ``(B, D)``, a TorchScript file's path, ``"mnist"``, or a torch-fidelity
            name (``"inception"``, ``"dinov2"``, ``"clip"``). Default with ``real``: ``"inception"``.
        real: The real images to compare against: uint8 ``(N, C, H, W)`` (or floats in [-1, 1]),
            or a callable returning them (called only if the cache misses).
        source: What ``real`` is, for the cache key (a set name, a folder); None: a hash of ``real``.
    """

    def __init__(self, every: int = 1, n: int = 10000, data_root: str | os.PathLike[str] | None = None,
                 batch_size: int = 500, seed: int = 0, *, features: Features | None = None,
                 real: RealImages | None = None, source: str | None = None) -> None:
        self.every = check_int("every", every)
        self.n = check_int("n", n)
        self.batch_size = check_int("batch_size", batch_size)
        self.seed = check_int("seed", seed, 0)
        if real is None and features is not None:
            raise ValueError(f"features={describe(features)} needs real=, the real images to compare against "
                             "(MNIST's own evaluation is the default when both are None)")
        if real is not None and not isinstance(real, torch.Tensor) and not callable(real):
            raise TypeError(f"real must be a (N, C, H, W) image tensor or a callable returning one, got "
                            f"{describe(real)}")
        if real is None:
            MNISTEvaluator(n, batch_size, data_root, "cpu", seed)  # checks the arguments now, not at epoch end
        self.data_root = data_root
        self.features = features if features is not None or real is None else "inception"
        self.real = real
        self.source = source
        self.floor: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.protocol: dict[str, Any] = {}
        self._evaluator: Any = None
        self._device: torch.device | None = None
        self._z: torch.Tensor | None = None

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The keys written into ``trainer.state.metrics``."""
        return METRIC_NAMES if self._evaluator is None or isinstance(self._evaluator, MNISTEvaluator) \
            else tuple(self._evaluator.metric_names)

    def _uses_fidelity(self) -> bool:
        return is_fidelity_name(self.features)

    def _build(self, device: torch.device) -> Any:
        if self.real is None:
            return MNISTEvaluator(self.n, self.batch_size, self.data_root, device, self.seed)
        if self._uses_fidelity():
            assert isinstance(self.features, str)
            return FidelityEvaluator(self.real, self.features, source=self.source, n=self.n, device=device,
                                     seed=self.seed)
        return ImageEvaluator(self.real, self.features, source=self.source, n=self.n, batch_size=self.batch_size,
                              device=device, seed=self.seed)

    def attach(self, trainer: GANTrainer) -> list[RemovableHandle]:
        """Register the EPOCH_END handler on ``trainer``; returns its handle."""
        shape = tuple(trainer.sample_shape)
        if self.real is None and shape != (1, 28, 28):
            raise ValueError(f"MetricsCallback scores MNIST images (1, 28, 28) by default, but this trainer's "
                             f"generator makes {shape}: pass real= (the images to compare against) and features=")
        if self.real is not None:  # what can be checked now is checked now, not at the first epoch's end
            self._evaluator, self._device = self._build(trainer.device), trainer.device
            if isinstance(self._evaluator, FidelityEvaluator):
                self._evaluator.check_weights()  # offline without cached weights: one line before training
            else:
                self._evaluator.extractor.check_images(shape)
        return [trainer.add_callback(Event.EPOCH_END, self._evaluate, every=self.every)]

    def _evaluate(self, trainer: GANTrainer) -> None:
        if self._evaluator is None or self._device != trainer.device:
            self._evaluator, self._device = self._build(trainer.device), trainer.device
        if self._z is None or self._z.shape[1] != trainer.latent_dim:
            gen = torch.Generator().manual_seed(self.seed)
            self._z = torch.randn(self.n, trainer.latent_dim, generator=gen)  # (n, latent_dim), on the CPU
        z = self._z
        num_classes = getattr(trainer, "num_classes", None)
        # A conditional generator gets balanced labels, not ones drawn from the trainer's RNG.
        labels = None if num_classes is None else torch.arange(self.n) % num_classes  # (n,)
        offset = 0

        def sample(k: int) -> torch.Tensor:
            nonlocal offset
            i, offset = offset, offset + k
            if labels is None:
                return trainer.sample(k, z=z[i : i + k]).float()  # (k, *sample_shape)
            return trainer.sample(k, z=z[i : i + k], labels=labels[i : i + k]).float()

        result = self._evaluator.evaluate(sample, with_floor=True)
        self.floor = {k: v for k, v in result.items() if k.startswith("real_")}
        self.last = result
        if not isinstance(self._evaluator, MNISTEvaluator):
            self.protocol = self._evaluator.protocol
        for name in self.metric_names:
            trainer.state.metrics[name] = result[name]
