"""The trainer's value types: one step's result, one epoch's means, and the loop's state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["EpochStats", "NonFiniteLossError", "StepResult", "TrainerState"]


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; raised before the optimizer step that would apply it."""


@dataclass(frozen=True)
class StepResult:
    """What one :meth:`GANTrainer.train_step` produced.

    All four are detached 0-d tensors on the training device, so returning them
    costs no host synchronisation; ``float(result.d_loss)`` (or :meth:`as_dict`)
    reads them.

    Attributes:
        d_loss: The discriminator loss of the last critic update, regularizers included.
        g_loss: The generator loss.
        d_real: Mean discriminator logit on the real batch (last critic update).
        d_fake: Mean discriminator logit on the fake batch (last critic update).
    """

    d_loss: torch.Tensor
    g_loss: torch.Tensor
    d_real: torch.Tensor
    d_fake: torch.Tensor

    def as_dict(self) -> dict[str, float]:
        """The four values as Python floats (one host synchronisation)."""
        values = torch.stack([self.d_loss, self.g_loss, self.d_real, self.d_fake]).float().tolist()
        return dict(zip(("d_loss", "g_loss", "d_real", "d_fake"), values))


@dataclass
class EpochStats:
    """Means over one completed epoch, recorded in ``TrainerState.history``."""

    epoch: int  # epochs completed, counted from 1
    step: int  # total steps at the end of this epoch
    d_loss: float
    g_loss: float
    d_real: float
    d_fake: float
    seconds: float  # wall time of the epoch in this process (0 if it spanned a resume)
    steps_per_s: float


@dataclass
class TrainerState:
    """Everything the loop knows about its progress; ``trainer.state``.

    Attributes:
        epoch: Epochs completed.
        step: Training steps completed (one step = ``n_critic`` D updates + one G update).
        epoch_step: Steps done in the epoch now running (0 between epochs).
        max_epochs: The ``epochs`` total of the running ``fit``.
        max_steps: The ``max_steps`` total of the running ``fit`` (None: no limit).
        last: The last :class:`StepResult`, or None before the first step.
        history: One :class:`EpochStats` per completed epoch (the per-epoch mean losses).
        metrics: Floats that callbacks measured at the latest epoch end (e.g. evaluation
            figures); emptied when the next epoch starts, so an epoch that measured nothing
            shows nothing.
        exception: The exception that ended ``fit``, while EXCEPTION handlers run.
        skipped_steps: Steps skipped by a NONFINITE handler (``GANTrainer.skip_step``).
        nonfinite: While NONFINITE handlers run: ``{"step": int, "which": "discriminator" |
            "generator", "loss": float}``; see ``GANTrainer.skip_step``.
    """

    epoch: int = 0
    step: int = 0
    epoch_step: int = 0
    max_epochs: int = 0
    max_steps: int | None = None
    last: StepResult | None = None
    history: list[EpochStats] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    exception: BaseException | None = None
    skipped_steps: int = 0
    nonfinite: dict[str, Any] | None = None
