"""MetricsCallback: score the generator on MNIST at the end of every N epochs, into ``trainer.state.metrics``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch

from torchgan_lite.metrics.evaluator import METRIC_NAMES, MNISTEvaluator
from torchgan_lite.training.events import Event, RemovableHandle

if TYPE_CHECKING:
    from torchgan_lite.training.trainer import GANTrainer

__all__ = ["MetricsCallback"]


class MetricsCallback:
    """Computes the MNIST metrics from ``trainer.sample`` every ``every`` epochs.

    The floats ``fd``, ``kid_mean``, ``kid_std``, ``classifier_score``, ``coverage_kl``,
    ``classes_at_1pct``, ``precision`` and ``recall`` are written into
    ``trainer.state.metrics`` (so :class:`~torchgan_lite.callbacks.progress.EpochLogger` prints them
    and checkpoints keep them); the real-data floor for the same ``n`` is in
    :attr:`floor`, and the latest full result (both) in :attr:`last`.

    The samples come from one fixed noise bank drawn from the callback's own
    generator (seeded with ``seed``), passed to ``trainer.sample(k, z=...)`` in
    chunks: epochs are compared on the same noise, and the trainer's random stream
    (its noise, dropout, data order) is not disturbed, so training with or without
    this callback follows the same trajectory. A conditional generator gets balanced
    labels (``i % num_classes``); an attached EMA generator is the one scored (as
    ``trainer.sample`` does by default).

    Args:
        every: Epochs between evaluations.
        n: Samples per evaluation.
        data_root: Folder holding ``MNIST/raw/``; None: ``$TORCHGAN_LITE_DATA``.
        batch_size: Samples generated and classified at once.
        seed: Seeds the noise bank, the floor's subset and KID's subsets.
    """

    def __init__(self, every: int = 1, n: int = 10000, data_root: str | os.PathLike[str] | None = None,
                 batch_size: int = 500, seed: int = 0) -> None:
        if isinstance(every, bool) or not isinstance(every, int):
            raise TypeError(f"every must be an int, got {every!r}")
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        MNISTEvaluator(n, batch_size, data_root, "cpu", seed)  # checks the arguments now, not at epoch end
        self.every = every
        self.n = n
        self.data_root = data_root
        self.batch_size = batch_size
        self.seed = seed
        self.floor: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self._evaluator: MNISTEvaluator | None = None
        self._z: torch.Tensor | None = None

    def attach(self, trainer: GANTrainer) -> list[RemovableHandle]:
        """Register the EPOCH_END handler on ``trainer``; returns its handle."""
        if tuple(trainer.sample_shape) != (1, 28, 28):
            raise ValueError(f"MetricsCallback scores MNIST images (1, 28, 28), but this trainer's generator makes "
                             f"{tuple(trainer.sample_shape)}")
        return [trainer.add_callback(Event.EPOCH_END, self._evaluate, every=self.every)]

    def _evaluate(self, trainer: GANTrainer) -> None:
        if self._evaluator is None or self._evaluator.device != trainer.device:
            self._evaluator = MNISTEvaluator(self.n, self.batch_size, self.data_root, trainer.device, self.seed)
        if self._z is None or self._z.shape[1] != trainer.latent_dim:
            gen = torch.Generator().manual_seed(self.seed)
            self._z = torch.randn(self.n, trainer.latent_dim, generator=gen)  # (n, latent_dim), on the CPU
        z = self._z
        num_classes = getattr(trainer, "num_classes", None)
        # A conditional generator gets balanced labels, not ones drawn from the trainer's RNG.
        labels = None if num_classes is None else torch.arange(self.n) % num_classes  # (n,)
        offsets = iter(range(0, self.n, self.batch_size))

        def sample(k: int) -> torch.Tensor:
            i = next(offsets)
            if labels is None:
                return trainer.sample(k, z=z[i : i + k]).float()  # (k, 1, 28, 28)
            return trainer.sample(k, z=z[i : i + k], labels=labels[i : i + k]).float()

        result = self._evaluator.evaluate(sample)
        self.floor = {k: v for k, v in result.items() if k.startswith("real_")}
        self.last = result
        for name in METRIC_NAMES:
            trainer.state.metrics[name] = result[name]
