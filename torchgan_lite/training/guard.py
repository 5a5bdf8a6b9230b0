"""What a training step does about NaN, infinity and divergence: a policy and three guards.

:class:`NonFinitePolicy` is the small typed value a user writes
(``StepConfig(nonfinite=NonFinitePolicy(every=100))``); it builds the guard that
the step calls at two points of every update:

- ``check_loss(which, loss)``: after the forward pass, before ``backward()``;
- ``check_gradients(which, params)``: after ``backward()`` (and the data-parallel
  sync), before ``optimizer.step()``.

The gradient check is what keeps optimizer state finite: Adam stores ``grad**2``,
which overflows float32 once one gradient entry passes about 1.8e19, long before
any loss is NaN. A total gradient norm that is not finite, or above
``max_grad_norm``, stops the update before it is applied, so the parameters and
the optimizer state stay what they were.

The guards:

- :class:`HostGuard` (``every=1``, the CPU default): reads each verdict on the host
  (free on a CPU, one synchronisation per update on a GPU); a bad update raises
  :class:`~torchgan_lite.training.state.NonFiniteLossError` with ``skippable=True`` before
  anything of it is applied. The step never calls up into its owner: the trainer catches
  that one exception type and decides (a ``NONFINITE`` handler may drop the step).
- :class:`DeferredGuard` (``every=N``, the accelerator default): records the first bad
  step on the device with no host read, and :meth:`DeferredGuard.poll` raises every N
  steps. It cannot skip: the bad update has been applied by the time it is read.
- :class:`NoGuard` (``every=0``): checks nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from torchgan_lite.training.state import NonFiniteLossError
from torchgan_lite.utils.checks import check_float, check_int

__all__ = ["DeferredGuard", "Guard", "HostGuard", "NoGuard", "NonFinitePolicy"]

#: sqrt(float32 max) ~ 1.8e19: past this a squared gradient (Adam's second moment) is infinite.
ADAM_SAFE_GRAD_NORM = 1e18


class Guard(Protocol):
    """What a step calls; see the module docstring."""

    def check_loss(self, which: str, loss: torch.Tensor) -> None: ...

    def check_gradients(self, which: str, params: Sequence[torch.Tensor]) -> None: ...

    def end_step(self) -> None: ...

    def poll(self, step: int, force: bool = False) -> None: ...

    def reset(self, step: int = 0) -> None: ...


def _total_norm(params: Sequence[torch.Tensor]) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.nn.utils.get_total_norm(grads, norm_type=2.0)  # (), float32


class NoGuard:
    """Checks nothing (``NonFinitePolicy(every=0)``)."""

    def check_loss(self, which: str, loss: torch.Tensor) -> None:
        pass

    def check_gradients(self, which: str, params: Sequence[torch.Tensor]) -> None:
        pass

    def end_step(self) -> None:
        pass

    def poll(self, step: int, force: bool = False) -> None:
        pass

    def reset(self, step: int = 0) -> None:
        pass


class HostGuard(NoGuard):
    """Every update checked on the host before it is applied; see the module docstring.

    Nothing is pending between steps, so ``end_step``, ``poll`` and ``reset`` are :class:`NoGuard`'s.

    Args:
        max_loss: A finite loss whose magnitude passes this counts as diverging.
        max_grad_norm: A total gradient norm above this counts as diverging.
        agree: With several processes, maps a local 0-d bool "ok" to the verdict of all
            ranks (an all-reduce), so that every rank stops or skips together.
    """

    def __init__(self, max_loss: float, max_grad_norm: float,
                 agree: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.max_loss = max_loss
        self.max_grad_norm = max_grad_norm
        self.agree = agree

    def _verdict(self, which: str, value: torch.Tensor, limit: float, what: str) -> None:
        ok = torch.isfinite(value) & (value.abs() <= limit)
        if self.agree is not None:
            ok = self.agree(ok)
        if bool(ok):
            return
        v = float(value)
        if not math.isfinite(v):
            reason = f"non-finite {what} ({v})"
        elif abs(v) > limit:
            reason = f"{what} {v:.3g} above the guard's limit {limit:.3g} (the run is diverging)"
        else:
            reason = f"non-finite {what} on another rank (here it was {v})"
        raise NonFiniteLossError(f"{reason} in the {which} update; no update was applied", which=which, value=v,
                                 skippable=True, reason=reason)

    def check_loss(self, which: str, loss: torch.Tensor) -> None:
        self._verdict(which, loss.detach(), self.max_loss, f"{which} loss")

    def check_gradients(self, which: str, params: Sequence[torch.Tensor]) -> None:
        self._verdict(which, _total_norm(params), self.max_grad_norm, f"{which} gradient norm")


class DeferredGuard:
    """Bad updates recorded on the device, read every ``every`` steps; see the module docstring.

    Args:
        every: Steps between host reads.
        device: Where the record lives.
        max_loss, max_grad_norm: As for :class:`HostGuard`.
        agree: With several processes, the max over ranks of a 0-d int64 tensor.
    """

    def __init__(self, every: int, device: torch.device, max_loss: float, max_grad_norm: float,
                 agree: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.every = every
        self.max_loss = max_loss
        self.max_grad_norm = max_grad_norm
        self.agree = agree
        self.counter = torch.zeros((), dtype=torch.int64, device=device)  # steps seen, on the device
        self.bad_now = torch.zeros((), dtype=torch.bool, device=device)  # a bad value in the running step
        self.first_bad = torch.full((), -1, dtype=torch.int64, device=device)  # its step number, or -1

    def _record(self, value: torch.Tensor, limit: float) -> None:
        self.bad_now |= ~(torch.isfinite(value) & (value.abs() <= limit))

    def check_loss(self, which: str, loss: torch.Tensor) -> None:
        self._record(loss.detach(), self.max_loss)

    def check_gradients(self, which: str, params: Sequence[torch.Tensor]) -> None:
        self._record(_total_norm(params).to(self.counter.device), self.max_grad_norm)

    def end_step(self) -> None:
        self.counter += 1
        self.first_bad.copy_(torch.where(self.bad_now & (self.first_bad < 0), self.counter, self.first_bad))
        self.bad_now.zero_()

    def poll(self, step: int, force: bool = False) -> None:
        """Raise :class:`NonFiniteLossError` if a bad step was recorded (at ``every`` steps, or ``force``)."""
        if not force and step % self.every:
            return
        first = self.first_bad if self.agree is None else self.agree(self.first_bad)
        bad = int(first)
        if bad >= 0:
            raise NonFiniteLossError(f"non-finite or diverging values at step {bad} of this run (found at step "
                                     f"{step}, checked every {self.every} steps); the weights since then are suspect")

    def reset(self, step: int = 0) -> None:
        """Forget what was recorded and count on from ``step`` (after loading a checkpoint, a good state)."""
        self.first_bad.fill_(-1)
        self.bad_now.zero_()
        self.counter.fill_(step)


@dataclass(frozen=True)
class NonFinitePolicy:
    """How often updates are checked for NaN, infinity and divergence, and how strictly.

    Attributes:
        every: 1: every update, on the host, before it is applied (a ``NONFINITE`` handler
            may skip the step). N > 1: recorded on the device, checked every N steps (no
            per-step synchronisation; raises, cannot skip). 0: off.
        max_loss: A finite loss above this in magnitude also stops the run (inf: only
            NaN/inf count). Useful to stop a diverging run while its numbers are finite.
        max_grad_norm: The same for the total gradient norm of the network being updated.
            The default is the float32 overflow point of Adam's squared gradients.
    """

    every: int = 1
    max_loss: float = math.inf
    max_grad_norm: float = ADAM_SAFE_GRAD_NORM  # past ~1.8e19, Adam's grad**2 is inf

    def __post_init__(self) -> None:
        check_int("NonFinitePolicy.every", self.every, 0)  # 0: off, 1: every update, N: every N steps
        for name in ("max_loss", "max_grad_norm"):  # inf: no limit
            check_float(f"NonFinitePolicy.{name}", getattr(self, name), 0.0, low_open=True, allow_inf=True)

    @classmethod
    def parse(cls, value: object, device: torch.device) -> NonFinitePolicy:
        """``"auto"`` (every update on a CPU, every 100 steps on an accelerator), an int, or a policy."""
        if isinstance(value, cls):
            return value
        if value == "auto" and isinstance(value, str):
            return cls(every=1 if device.type == "cpu" else 100)
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 0:
                raise ValueError(f"nonfinite must be >= 0 (0: off, 1: every update, N: every N steps), got {value}")
            return cls(every=value)
        raise TypeError(f"nonfinite must be 'auto', an int (0: off, 1: every update, N: every N steps) or a "
                        f"NonFinitePolicy, got {value!r}")

    def make_guard(self, device: torch.device,
                   agree_ok: Callable[[torch.Tensor], torch.Tensor] | None = None,
                   agree_max: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Guard:
        """The guard this policy describes."""
        if self.every == 0:
            return NoGuard()
        if self.every == 1:
            return HostGuard(self.max_loss, self.max_grad_norm, agree_ok)
        return DeferredGuard(self.every, device, self.max_loss, self.max_grad_norm, agree_max)
