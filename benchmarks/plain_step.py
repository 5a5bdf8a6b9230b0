"""The "plain" benchmark variant: the tutorial's step, literally, on the library's modules.

Between the tutorial's loop (:mod:`benchmarks.reference_loop`, the baseline) and the
library's default step sits this one: the library's networks built from
``nn.Linear``/``nn.Dropout`` (``fast_layers=False``), its loss on logits, and the
tutorial's way of stepping, which the library's step no longer offers:

- the fakes of the D update are made *with* a graph through G, then ``.detach()``-ed;
- gradients are zeroed by writing zeros (``zero_grad(set_to_none=False)``);
- the G update also computes D's weight gradients (D is not frozen);
- ``Adam(lr=2e-4, foreach=False)``: a Python loop over the parameters;
- both losses are read on the host every step (the tutorial's per-step log).

It is a :class:`~torchgan_lite.training.step.GANStep` subclass, run by a ``GANTrainer`` through
its public ``step_class`` option, so it has the library's data path and loop; the
difference to the ``default`` variant is the step alone.
"""

from __future__ import annotations

from typing import Any

import torch

from torchgan_lite.training.state import StepResult
from torchgan_lite.training.step import DUpdate, GANStep

__all__ = ["TutorialLiteralStep", "TwoCallStep", "tutorial_adam"]


def tutorial_adam(params: Any) -> torch.optim.Adam:
    """The tutorial's optimizer, as it runs on a CPU: ``Adam(lr=2e-4)`` with a per-parameter loop."""
    return torch.optim.Adam(params, lr=2e-4, foreach=False)


class TutorialLiteralStep(GANStep):
    """The tutorial's step structure on the library's models (see the module docstring).

    Regularizers, augmentation, ``amp``, the non-finite guard and the gradient sync are
    ignored: this is a float32 benchmark baseline of the reference recipe only. Real and fake
    are scored in two discriminator calls, as the tutorial does.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._score_once = False  # the tutorial's two calls, D(real) then D(fake)

    def discriminator_update(self, real: torch.Tensor, labels: torch.Tensor | None = None) -> DUpdate:
        z, fake_labels = self.noise(real.shape[0])  # (B, latent)
        fake = self.generate(z, fake_labels).detach().to(real.dtype)  # a graph built, then thrown away
        real_logits, fake_logits = self.score(real, labels, fake, fake_labels)  # (B,), (B,)
        d_loss = self.loss.discriminator_loss(real_logits, fake_logits)
        self.d_optimizer.zero_grad(set_to_none=False)
        d_loss.backward()
        self.d_optimizer.step()
        real_logits, fake_logits = real_logits.detach(), fake_logits.detach()
        return DUpdate(d_loss.detach(), real_logits.mean(), fake_logits.mean(), real_logits.sign().mean())

    def generator_update(self, batch_size: int, real: torch.Tensor | None = None,
                         labels: torch.Tensor | None = None) -> torch.Tensor:
        z, fake_labels = self.noise(batch_size)  # (B, latent); the tutorial's loss needs no real logits
        g_loss = self.loss.generator_loss(self.logits(self.generate(z, fake_labels), fake_labels))
        self.g_optimizer.zero_grad(set_to_none=False)
        g_loss.backward()  # D's weight gradients too, as the tutorial's G step computes them
        self.g_optimizer.step()
        return g_loss.detach()

    def step(self, real: torch.Tensor, labels: torch.Tensor | None = None) -> StepResult:
        result = super().step(real, labels)
        result.as_dict()  # the tutorial reads each loss on the host every step
        return result


class TwoCallStep(GANStep):
    """The default step scoring real and fake in two discriminator calls, as it did before the
    MLP discriminators declared ``independent_samples``: the "before" of that change, run beside it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._score_once = False
