"""Learning-rate schedules as trainer callbacks, and the two-time-scale update rule (TTUR).

:class:`LRSchedule` steps any ``torch.optim.lr_scheduler`` scheduler at every step or
every epoch and saves its position in checkpoints (through the scheduler's own
``state_dict``), so a resumed run continues the same schedule:

    g_opt, d_opt = ttur(G, D)                         # Adam: D at 4e-4, G at 1e-4
    trainer = GANTrainer(G, D, loss, g_optimizer=g_opt, d_optimizer=d_opt)
    decay = torch.optim.lr_scheduler.LinearLR(g_opt, 1.0, 0.0, total_iters=total_steps)
    LRSchedule(decay, interval="step").attach(trainer)

TTUR (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a
Local Nash Equilibrium") is nothing more than two optimizers with different learning
rates, the discriminator's the larger; :func:`ttur` builds that pair.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from torchgan_lite.training.events import Event, RemovableHandle
from torchgan_lite.utils.checks import check_float

if TYPE_CHECKING:
    from torchgan_lite.training.trainer import GANTrainer

__all__ = ["LRSchedule", "ttur"]

_INTERVALS = {"step": Event.STEP_END, "epoch": Event.EPOCH_END}


class LRSchedule:
    """Step a learning-rate scheduler after every training step or every epoch.

    Args:
        scheduler: Any ``torch.optim.lr_scheduler`` scheduler (anything with ``step()``,
            ``state_dict()`` and ``load_state_dict()``) over the step's ``g_optimizer``
            or ``d_optimizer``. ``ReduceLROnPlateau`` needs a metric and is not supported.
        interval: ``"step"``: ``scheduler.step()`` at every STEP_END; ``"epoch"``: at every EPOCH_END.
        name: The checkpoint entry (default: ``"lr_schedule_g"`` or ``"lr_schedule_d"`` after
            the optimizer it drives; give one to attach two schedules to one optimizer).

    Attributes:
        name: The checkpoint entry, set by :meth:`attach`.
    """

    def __init__(self, scheduler: Any, interval: str = "step", name: str | None = None) -> None:
        if isinstance(scheduler, torch.optim.Optimizer):
            raise TypeError("got an optimizer: pass a torch.optim.lr_scheduler scheduler over it, e.g. "
                            "LRSchedule(torch.optim.lr_scheduler.StepLR(optimizer, 1000))")
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            raise TypeError("ReduceLROnPlateau needs a metric at each step; LRSchedule steps without one")
        for attr in ("step", "state_dict", "load_state_dict"):
            if not callable(getattr(scheduler, attr, None)):
                raise TypeError(f"scheduler must be a torch.optim.lr_scheduler scheduler (no {attr}()), got "
                                f"{type(scheduler).__name__}")
        if interval not in _INTERVALS:
            raise ValueError(f"interval must be one of {tuple(_INTERVALS)}, got {interval!r}")
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"name must be a non-empty str or None, got {name!r}")
        self.scheduler = scheduler
        self.interval = interval
        self.name = name

    def attach(self, trainer: GANTrainer) -> list[RemovableHandle]:
        """Step the scheduler at the interval's event and save its state in checkpoints under ``name``.

        Attach before ``trainer.load_checkpoint`` so a resumed run restores the schedule. Loading
        compares the schedule's ``initial_lr`` with the saved run's (not the moving ``lr``) and
        continues from the saved rates.
        """
        for attr in ("add_callback", "register_state", "gan_step"):
            if not hasattr(trainer, attr):
                raise TypeError(f"trainer must be a GANTrainer (no {attr!r}), got {type(trainer).__name__}")
        optimizer = getattr(self.scheduler, "optimizer", None)
        if self.name is None:
            if optimizer is trainer.gan_step.g_optimizer:
                self.name = "lr_schedule_g"
            elif optimizer is trainer.gan_step.d_optimizer:
                self.name = "lr_schedule_d"
            else:
                raise ValueError("the scheduler drives neither trainer.gan_step.g_optimizer nor "
                                 "trainer.gan_step.d_optimizer; give it name= to attach it anyway")
        trainer.register_state(self.name, self)
        return [trainer.add_callback(_INTERVALS[self.interval], self._on_event)]

    def _on_event(self, trainer: GANTrainer) -> None:
        self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        """The scheduler's ``state_dict()`` (its position, its last learning rates) and the interval."""
        return {"scheduler": self.scheduler.state_dict(), "interval": self.interval}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the scheduler's position; the interval stays this object's."""
        if not isinstance(state, dict) or not isinstance(state.get("scheduler"), dict):
            raise ValueError(f"expected an LRSchedule.state_dict() with a 'scheduler' entry, got "
                             f"{sorted(state) if isinstance(state, dict) else type(state).__name__}")
        self.scheduler.load_state_dict(state["scheduler"])


def _check_lr(name: str, value: object) -> float:
    return check_float(name, value, 0.0, low_open=True)


def ttur(generator: nn.Module, discriminator: nn.Module, g_lr: float = 1e-4, d_lr: float = 4e-4,
         betas: tuple[float, float] = (0.9, 0.999), fused: bool = True
         ) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """The two-time-scale update rule: Adam for each network, the discriminator's learning rate the larger.

    Args:
        generator: Its parameters go to the first optimizer.
        discriminator: Its parameters go to the second.
        g_lr: The generator's learning rate (Heusel et al.; SAGAN: 1e-4).
        d_lr: The discriminator's (4e-4).
        betas: Adam's betas of both (default: PyTorch's, the reference recipe's; SAGAN used (0, 0.9)).
        fused: One fused kernel per parameter group, as the trainer's default optimizer.

    Returns:
        ``(g_optimizer, d_optimizer)``.
    """
    for name, module in (("generator", generator), ("discriminator", discriminator)):
        if not isinstance(module, nn.Module):
            raise TypeError(f"{name} must be a torch.nn.Module, got {type(module).__name__}")
    g_lr, d_lr = _check_lr("g_lr", g_lr), _check_lr("d_lr", d_lr)
    return (torch.optim.Adam(generator.parameters(), lr=g_lr, betas=betas, fused=fused),
            torch.optim.Adam(discriminator.parameters(), lr=d_lr, betas=betas, fused=fused))
