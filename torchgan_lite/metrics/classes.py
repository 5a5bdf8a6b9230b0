"""Class accuracy of a conditional generator, scored by the shipped MNIST classifier.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from torchgan_lite.nets.conditional import digit_grid_labels
from torchgan_lite.utils.checks import check_int

__all__ = ["class_accuracy", "generator_class_accuracy"]


@torch.no_grad()
def class_accuracy(
    sample: Callable[[torch.Tensor], torch.Tensor],
    classify: Callable[[torch.Tensor], torch.Tensor],
    num_classes: int = 10,
    per_class: int = 1000,
    batch_size: int = 500,
) -> dict[str, float]:
    """How often a conditional generator draws the class it was asked for, judged by a classifier.

    For each class ``c``, ``per_class`` samples are drawn with label ``c`` and classified;
    the figure is the fraction classified as ``c``.

    Args:
        sample: ``labels (b,) -> images (b, ...)``, e.g. ``lambda y: trainer.sample(len(y), labels=y)``.
        classify: ``images (b, ...) -> logits (b, num_classes)``, e.g. the metrics package's
            ``load_classifier()``.
        num_classes: Classes asked for.
        per_class: Samples per class.
        batch_size: Samples drawn and classified at once.

    Returns:
        ``{"accuracy": overall fraction, "min_class_accuracy": the worst class's,
        "accuracy_<c>": each class's}``.
    """
    check_int("num_classes", num_classes)
    check_int("per_class", per_class)
    check_int("batch_size", batch_size)
    labels = digit_grid_labels(num_classes, per_class)  # (C * P,) on the CPU
    correct = torch.zeros(num_classes, dtype=torch.int64)
    for chunk in labels.split(batch_size):
        logits = classify(sample(chunk))  # (b, num_classes)
        if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (chunk.shape[0], num_classes):
            raise ValueError(f"classify must return logits of shape ({chunk.shape[0]}, {num_classes}), got "
                             f"{getattr(logits, 'shape', type(logits).__name__)}")
        hit = logits.argmax(dim=1).cpu() == chunk  # (b,)
        correct += torch.bincount(chunk[hit], minlength=num_classes)
    per = (correct.double() / per_class).tolist()
    result = {"accuracy": sum(per) / num_classes, "min_class_accuracy": min(per)}
    result.update({f"accuracy_{c}": a for c, a in enumerate(per)})
    return result


def generator_class_accuracy(
    generator: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    latent_dim: int,
    classify: Callable[[torch.Tensor], torch.Tensor] | None = None,
    num_classes: int = 10,
    per_class: int = 1000,
    seed: int = 1234,
    batch_size: int = 500,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """:func:`class_accuracy` of a conditional generator ``G(z, y)`` on a seeded noise bank, without gradients.

    The noise ``(num_classes * per_class, latent_dim)`` is drawn on the CPU from its own
    ``torch.Generator`` seeded with ``seed`` (the global RNG is untouched), so the same
    weights always get the same figure; the training callback of ``--eval-every`` and
    ``torchgan-lite-evaluate`` both score this way.

    Args:
        generator: ``(z (b, latent_dim), labels (b,)) -> images (b, 1, 28, 28)`` in [-1, 1], e.g. a
            conditional generator in eval mode, or ``lambda z, y: trainer.sample(len(y), z=z, labels=y)``.
        latent_dim: The noise size.
        classify: ``images -> logits (b, num_classes)``; None: the shipped MNIST classifier on ``device``.
        num_classes, per_class, batch_size: As :func:`class_accuracy`.
        seed: Seed of the noise bank.
        device: Where the noise is moved for ``generator`` (and the shipped classifier runs).

    Returns:
        As :func:`class_accuracy`: ``accuracy``, ``min_class_accuracy`` and ``accuracy_<c>`` per class.
    """
    latent_dim = check_int("latent_dim", latent_dim)
    check_int("per_class", per_class)
    check_int("num_classes", num_classes)
    if classify is None:
        from torchgan_lite.metrics.classifier import load_classifier

        classify = load_classifier(device)
    z = torch.randn(num_classes * per_class, latent_dim, generator=torch.Generator().manual_seed(seed))
    offset = 0

    def sample(labels: torch.Tensor) -> torch.Tensor:  # class_accuracy asks for the labels in order, in chunks
        nonlocal offset
        zb = z[offset : offset + labels.shape[0]].to(device)  # (b, latent_dim)
        offset += labels.shape[0]
        with torch.no_grad():
            return generator(zb, labels.to(device)).float()

    return class_accuracy(sample, classify, num_classes, per_class, batch_size=batch_size)
