"""Adaptive discriminator augmentation (ADA): a callback that moves an augment's probability
by the sign of the discriminator's outputs on real data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import torch
import torch.distributed
from torch import nn

from torchgan_lite.training.events import Event, RemovableHandle
from torchgan_lite.utils.checks import check_float, check_int

if TYPE_CHECKING:
    from torchgan_lite.training.trainer import GANTrainer

__all__ = ["STATE_NAME", "AdaptiveAugment"]

STATE_NAME = "adaptive_augment"


class AdaptiveAugment:
    """ADA's feedback loop (Karras et al. 2020): raise ``augment.p`` while D overfits, lower it otherwise.

    After every ``interval`` steps, with ``r_t`` the mean over those steps of
    ``trainer.state.last.real_sign`` (the mean of ``sign(D(real))`` in the step's last D
    update),

        p <- clamp(p + sign(r_t - target) * batch * interval / speed_images, 0, 1)

    so ``p`` can go from 0 to 1 in ``speed_images`` images (the paper: 500k). Everything runs
    on the device: the sum of ``real_sign`` is a device tensor, ``p`` a device buffer; the
    host reads nothing. The sum and the step count are this callback's state, saved in
    checkpoints under ``"adaptive_augment"`` (with ``p``), so a resumed run adjusts exactly
    as an unbroken one.

    Args:
        augment: The :class:`DiffAugment` (or any module with a 0-d ``probability`` buffer) to adjust.
        target: The value of ``r_t`` to hold (the paper: 0.6).
        interval: Steps between adjustments (the paper: 4).
        speed_images: Images over which ``p`` can rise from 0 to 1 (the paper: 500,000).
        batch_size: Images a step, all processes together; None: the augment's ``last_batch_size``
            times the trainer's ``world_size``.

    Under data parallelism (``torchrun``; :meth:`attach` reads the trainer's ``world_size``) the
    sum of ``real_sign`` is averaged over the processes (one ``all_reduce`` of a scalar every
    ``interval`` steps) before ``p`` moves, so every rank holds the same ``p``, the one a single
    process with the global batch would hold.
    """

    def __init__(self, augment: nn.Module, target: float = 0.6, interval: int = 4, speed_images: int = 500_000,
                 batch_size: int | None = None) -> None:
        prob = getattr(augment, "probability", None)
        if not isinstance(prob, torch.Tensor) or prob.numel() != 1:
            raise TypeError(f"augment must be a DiffAugment (a module with a 0-d 'probability' buffer), got "
                            f"{type(augment).__name__}")
        self.augment = augment
        self.target = check_float("target", target, -1.0, 1.0)  # a mean of signs
        self.interval = check_int("interval", interval)
        self.speed_images = check_int("speed_images", speed_images)
        self.batch_size = None if batch_size is None else check_int("batch_size", batch_size)
        self.sign_sum: torch.Tensor | None = None  # sum of real_sign since the last adjustment
        self.steps = 0  # steps seen (the adjustment happens when steps % interval == 0)
        self.world_size = 1  # processes whose real_sign is averaged; attach() takes the trainer's

    def attach(self, trainer: GANTrainer) -> list[RemovableHandle]:
        """Adjust at every STEP_END; save this callback's state in checkpoints as ``"adaptive_augment"``."""
        for attr in ("add_callback", "register_state", "state"):
            if not hasattr(trainer, attr):
                raise TypeError(f"trainer must be a GANTrainer (no {attr!r}), got {type(trainer).__name__}")
        self.world_size = int(getattr(trainer, "world_size", 1))
        trainer.register_state(STATE_NAME, self)
        return [trainer.add_callback(Event.STEP_END, self._on_step)]

    def _on_step(self, trainer: GANTrainer) -> None:
        real_sign = getattr(trainer.state.last, "real_sign", None)
        if real_sign is None:
            raise RuntimeError("AdaptiveAugment needs trainer.state.last.real_sign (the mean of sign(D(real))), "
                               "which this trainer's StepResult does not provide")
        self.observe(real_sign)

    def _probability(self) -> torch.Tensor:
        """The augment's ``probability`` buffer, looked up each time (``.to(device)`` replaces buffers)."""
        return cast(torch.Tensor, self.augment.probability)

    @torch.no_grad()
    def observe(self, real_sign: torch.Tensor | float) -> None:
        """Add one step's ``real_sign``; at every ``interval``-th step, adjust ``p`` and restart the sum."""
        prob = self._probability()
        value = torch.as_tensor(real_sign, dtype=torch.float32, device=prob.device)
        if self.sign_sum is None:
            self.sign_sum = torch.zeros((), dtype=torch.float32, device=prob.device)
        self.sign_sum = self.sign_sum.to(prob.device)
        self.sign_sum.add_(value.reshape(()))
        self.steps += 1
        if self.steps % self.interval == 0:
            batch = self.batch_size or getattr(self.augment, "last_batch_size", 0) * self.world_size
            if not batch:
                raise RuntimeError("AdaptiveAugment: the batch size is unknown (the augment has not run yet); "
                                   "pass batch_size=")
            if self.world_size > 1:  # every rank moves p by the same, global, mean
                torch.distributed.all_reduce(self.sign_sum)
                self.sign_sum.div_(self.world_size)
            rate = batch * self.interval / self.speed_images
            adjust = torch.sign(self.sign_sum / self.interval - self.target) * rate
            prob.copy_((prob + adjust).clamp_(0.0, 1.0))
            self.sign_sum.zero_()

    def state_dict(self) -> dict[str, Any]:
        """``{"p": tensor, "sign_sum": tensor or None, "steps": int}`` (copies)."""
        return {"p": self._probability().detach().clone(),
                "sign_sum": None if self.sign_sum is None else self.sign_sum.detach().clone(),
                "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``p``, the partial sum and the step count (checked before anything changes)."""
        if not isinstance(state, dict) or not {"p", "sign_sum", "steps"} <= set(state):
            raise ValueError(f"expected an AdaptiveAugment.state_dict() with p, sign_sum and steps, got "
                             f"{sorted(state) if isinstance(state, dict) else type(state).__name__}")
        p, sign_sum = state["p"], state["sign_sum"]
        if not isinstance(p, torch.Tensor) or p.numel() != 1 or not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"AdaptiveAugment state: p must be a 1-element tensor in [0, 1], got {p!r}")
        if sign_sum is not None and (not isinstance(sign_sum, torch.Tensor) or sign_sum.numel() != 1):
            raise ValueError(f"AdaptiveAugment state: sign_sum must be a 1-element tensor or None, got {sign_sum!r}")
        steps = check_int("steps", state["steps"], minimum=0)
        prob = self._probability()
        prob.copy_(p.reshape(()))
        self.sign_sum = None if sign_sum is None else sign_sum.detach().clone().float().reshape(()).to(prob.device)
        self.steps = steps
