"""The trainer's value types: one step's result, one epoch's means, and the loop's state."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch

__all__ = ["EpochStats", "NonFiniteLossError", "StepResult", "TrainerState", "TrainingInterrupted"]


class NonFiniteLossError(FloatingPointError):
    """A loss or gradient became NaN, infinite or diverging.

    The one exception type a step's guard raises. A :class:`~torchgan_lite.training.guard.HostGuard`
    raises it before the update that would apply the bad value (``skippable=True``: nothing of
    that update was applied, so the trainer may drop the step); a deferred check raises it after
    the fact (``skippable=False``).

    Attributes:
        which: ``"discriminator"`` or ``"generator"`` (None when not known, e.g. a deferred check).
        value: The offending loss or gradient norm (NaN when not known).
        reason: What was wrong, in words.
        skippable: Whether the step can be dropped with no update of the failing network applied.
    """

    def __init__(self, message: str, which: str | None = None, value: float = float("nan"),
                 skippable: bool = False, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = message if reason is None else reason
        self.which = which
        self.value = value
        self.skippable = skippable


class TrainingInterrupted(KeyboardInterrupt):
    """``fit`` was stopped by SIGINT (Ctrl-C) or SIGTERM (``kill``, ``timeout``, Slurm, ``docker stop``).

    Raised at a step boundary after the current step finished, so an ``EXCEPTION``
    handler (``ModelCheckpoint``) saves a consistent state. A ``KeyboardInterrupt``, so
    code that catches Ctrl-C catches it too.

    Attributes:
        signal: The signal number (``signal.SIGINT`` or ``signal.SIGTERM``).
        step: The steps completed when ``fit`` stopped.
    """

    def __init__(self, message: str, signal: int, step: int) -> None:
        super().__init__(message)
        self.signal = signal
        self.step = step


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
        real_sign: Mean of ``sign(D(real))`` (last critic update): how sure D is that the
            reals are real; ADA's overfitting heuristic. None where a step did not measure it.
    """

    d_loss: torch.Tensor
    g_loss: torch.Tensor
    d_real: torch.Tensor
    d_fake: torch.Tensor
    real_sign: torch.Tensor | None = None

    def as_tuple(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(d_loss, g_loss, d_real, d_fake)``, still on the device."""
        return self.d_loss, self.g_loss, self.d_real, self.d_fake

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

    def state_dict(self) -> dict[str, Any]:
        """The progress to save: counters, history and the latest metrics (plain values)."""
        return {
            "epoch": self.epoch,
            "step": self.step,
            "epoch_step": self.epoch_step,
            "skipped_steps": self.skipped_steps,
            "history": [asdict(h) for h in self.history],
            "metrics": {k: _plain_metric(v) for k, v in self.metrics.items()},
        }

    @staticmethod
    def check_state_dict(saved: object, source: str = "state") -> list[EpochStats]:
        """Raise ``ValueError`` naming ``source`` unless ``saved`` is a :meth:`state_dict`; returns the history."""
        if not isinstance(saved, dict):
            raise ValueError(f"{source}: 'trainer' entry is {type(saved).__name__}, expected a dict")
        for key in ("epoch", "step", "epoch_step", "history"):
            if key not in saved:
                raise ValueError(f"{source}: 'trainer' entry has no {key!r}")
        for key in ("epoch", "step", "epoch_step"):
            if type(saved[key]) is not int or saved[key] < 0:
                raise ValueError(f"{source}: trainer {key} must be an int >= 0, got {saved[key]!r}")
        if saved["epoch_step"] > saved["step"]:
            raise ValueError(f"{source}: trainer epoch_step {saved['epoch_step']} exceeds step {saved['step']}")
        history = saved["history"]
        if not isinstance(history, list):
            raise ValueError(f"{source}: trainer history must be a list, got {type(history).__name__}")
        names = {f.name for f in fields(EpochStats)}
        rebuilt = []
        for i, h in enumerate(history):
            if not isinstance(h, dict) or set(h) != names:
                raise ValueError(f"{source}: trainer history[{i}] must be a dict with keys {sorted(names)}")
            rebuilt.append(EpochStats(**h))
        if not isinstance(saved.get("metrics", {}), dict):
            raise ValueError(f"{source}: trainer metrics must be a dict, got {type(saved['metrics']).__name__}")
        return rebuilt

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (checked first); the per-fit fields are reset."""
        history = self.check_state_dict(saved)
        self.epoch, self.step, self.epoch_step = saved["epoch"], saved["step"], saved["epoch_step"]
        self.skipped_steps = int(saved.get("skipped_steps", 0))
        self.history = history
        self.metrics = dict(saved.get("metrics", {}))
        self.last = None
        self.nonfinite = None


def _plain_metric(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value)  # a 0-d tensor metric: a float, readable without torch
    if hasattr(value, "item") and type(value).__module__ == "numpy":
        return value.item()  # a NumPy scalar: a Python number, which weights_only loading accepts
    return value
