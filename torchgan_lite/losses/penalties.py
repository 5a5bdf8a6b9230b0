"""Discriminator regularizers: gradient penalties (WGAN-GP, R1, R2), LeCam, lazy regularisation.

Like :mod:`torchgan_lite.losses`, these only compute values: the step adds them to the
discriminator's loss and does the one backward pass (docs/architecture.md).

- :class:`GradientPenalty` (WGAN-GP), :class:`R1Penalty` and :class:`R2Penalty` (Mescheder
  et al. 2018: the squared input gradient of D on real, respectively fake, samples; R3GAN
  uses both): called ``reg(discriminator, real, fake)``, each takes a double backward.
- :class:`LeCamRegularizer` (Tseng et al. 2021, "Regularizing Generative Adversarial
  Networks under Limited Data"): anchors D's outputs to moving averages of its outputs
  on the other side. Its class sets ``uses_logits = True``, so the step calls it
  ``reg(real_logits, fake_logits)`` and it costs no extra discriminator call.
- :class:`LazyRegularizer` (Karras et al. 2020, StyleGAN2, section 3.1): evaluates an
  expensive penalty (R1, a gradient penalty) every ``every``-th call only, scaled by
  ``every`` so its average strength is unchanged; :func:`lazy_adam_hparams` is the
  matching correction of Adam's learning rate and betas.
- Spectral normalisation (Miyato et al. 2018), a constraint rather than a penalty, lives in
  :mod:`torchgan_lite.nets.spectral` (:func:`~torchgan_lite.nets.spectral.apply_spectral_norm`).

The moving averages and the call counter are state: ``state_dict``/``load_state_dict``
save and restore them, so that a resumed run computes exactly the same penalties.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from torchgan_lite.losses.adversarial import _check_finite
from torchgan_lite.utils.checks import check_int

__all__ = [
    "GradientPenalty", "LazyRegularizer", "LeCamRegularizer", "R1Penalty", "R2Penalty", "Regularizer",
    "lazy_adam_hparams"
]


# --------------------------------------------------------------------------- regularizers


@runtime_checkable
class Regularizer(Protocol):
    """A penalty on the discriminator, added to its loss before the one backward pass.

    Called as ``reg(discriminator, real, fake)`` with the real batch and the
    (detached) fake batch; returns a scalar tensor that still carries the graph.
    """

    def __call__(self, discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor: ...


def _input_gradient(discriminator: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``dD(x)/dx`` per sample, kept in the graph so the penalty can be backpropagated."""
    x = x.detach().requires_grad_(True)
    out = discriminator(x)  # (B,)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return grad.flatten(1)  # (B, prod(sample_shape))


@dataclass(frozen=True)
class GradientPenalty:
    """WGAN-GP (Gulrajani et al. 2017): ``weight * E[(||grad D(x_hat)||_2 - target)^2]``.

    ``x_hat = a * real + (1 - a) * fake`` with one ``a ~ U(0, 1)`` per sample.

    Attributes:
        weight: The paper's lambda = 10.
        target: The norm the gradient is pulled towards (1 for 1-Lipschitz).
    """

    weight: float = 10.0
    target: float = 1.0

    def __post_init__(self) -> None:
        if _check_finite("weight", self.weight) < 0:
            raise ValueError(f"weight must be >= 0, got {self.weight}")
        _check_finite("target", self.target)

    def __call__(self, discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        if real.shape != fake.shape:
            raise ValueError(f"GradientPenalty needs real and fake of one shape, got {tuple(real.shape)} and "
                             f"{tuple(fake.shape)}")
        alpha_shape = (real.shape[0],) + (1,) * (real.dim() - 1)
        alpha = torch.rand(alpha_shape, device=real.device, dtype=real.dtype)  # (B, 1, 1, 1)
        fake = fake.detach().to(real.dtype)  # a bfloat16 fake from autocast meets a float32 real
        x_hat = torch.lerp(fake, real.detach(), alpha)  # alpha * real + (1 - alpha) * fake
        grad = _input_gradient(discriminator, x_hat)
        return self.weight * (grad.norm(2, dim=1) - self.target).square().mean()


@dataclass(frozen=True)
class _ZeroCenteredPenalty:
    """``gamma / 2 * E[||grad D(x)||^2]`` on the samples a subclass picks: R1's and R2's shared code."""

    gamma: float = 10.0

    def __post_init__(self) -> None:
        if _check_finite("gamma", self.gamma) < 0:
            raise ValueError(f"gamma must be >= 0, got {self.gamma}")

    def _penalty(self, discriminator: nn.Module, x: torch.Tensor) -> torch.Tensor:
        grad = _input_gradient(discriminator, x)  # (B, prod(sample_shape)); x detached inside
        return 0.5 * self.gamma * grad.square().sum(dim=1).mean()


@dataclass(frozen=True)
class R1Penalty(_ZeroCenteredPenalty):
    """R1 (Mescheder et al. 2018): ``gamma / 2 * E[||grad D(x)||^2]`` on real samples.

    Attributes:
        gamma: Penalty weight; 10 is the paper's MNIST/CIFAR choice.
    """

    def __call__(self, discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return self._penalty(discriminator, real)


@dataclass(frozen=True)
class R2Penalty(_ZeroCenteredPenalty):
    """R2: ``gamma / 2 * E[||grad D(G(z))||^2]``, R1 on the fake samples (Mescheder et al. 2018; R3GAN's R1 + R2).

    The fake batch is detached first, so the penalty reaches D's parameters only, never G's.
    R3GAN (Huang et al. 2024) adds R1 and R2 with one gamma to
    :class:`~torchgan_lite.losses.adversarial.RelativisticPairingLoss`.

    Attributes:
        gamma: Penalty weight (R3GAN: 0.05 on CIFAR-10 up to 150 on FFHQ 256).
    """

    def __call__(self, discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return self._penalty(discriminator, fake.detach().to(real.dtype))  # bfloat16 fakes meet float32 reals


def _check_float(name: str, value: object, low: float, high: float, closed_high: bool = False) -> float:
    """``float(value)`` if it is a real number in ``[low, high)`` (``[low, high]`` if closed_high)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite float, got {value!r}")
    if not (low <= value <= high if closed_high else low <= value < high):
        raise ValueError(f"{name} must be in [{low}, {high}{']' if closed_high else ')'}, got {value}")
    return float(value)


class LeCamRegularizer:
    """LeCam regularisation: ``weight * (E[relu(D(x) - a_F)^2] + E[relu(a_R - D(G(z)))^2])``.

    ``a_R`` and ``a_F`` are exponential moving averages of the mean real and fake logits,
    updated on every call *before* the penalty is computed (``a <- decay * a + (1 - decay) *
    mean``, the first call copies the means), as the authors' code and StudioGAN do. The
    penalty keeps the real logits from running above the fakes' average and the fake logits
    from running below the reals' average, which bounds how far D can separate them (a
    LeCam divergence); the moving averages carry no gradient. No host synchronisation.

    Attributes:
        uses_logits: True: the step calls ``reg(real_logits, fake_logits)``.
        weight: lambda (the paper: 0.3 on CIFAR-10 BigGAN, 0.01 on ImageNet).
        decay: The moving averages' decay (the paper: 0.99).
        real_ema, fake_ema: The moving averages (0-d float32 tensors), None before the first call.
        num_updates: Calls so far.
    """

    uses_logits = True

    def __init__(self, weight: float, decay: float = 0.99) -> None:
        self.weight = _check_float("weight", weight, 0.0, math.inf)
        self.decay = _check_float("decay", decay, 0.0, 1.0)
        self.real_ema: torch.Tensor | None = None
        self.fake_ema: torch.Tensor | None = None
        self.num_updates = 0

    def __repr__(self) -> str:
        return f"LeCamRegularizer(weight={self.weight}, decay={self.decay})"

    def __call__(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """The penalty for this discriminator update (and one moving-average update).

        Args:
            real_logits: D's logits on the real batch, ``(B,)`` or ``(B, 1)``.
            fake_logits: D's logits on the fake batch, ``(B,)`` or ``(B, 1)``.

        Returns:
            A 0-d tensor, differentiable in both logits.
        """
        for name, t in (("real_logits", real_logits), ("fake_logits", fake_logits)):
            if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.numel() == 0:
                raise TypeError(f"{name} must be a non-empty floating-point tensor, got "
                                f"{t.dtype if isinstance(t, torch.Tensor) else type(t).__name__}")
        real_mean = real_logits.detach().float().mean()  # ()
        fake_mean = fake_logits.detach().float().mean()  # ()
        if self.real_ema is None or self.fake_ema is None:
            self.real_ema, self.fake_ema = real_mean.clone(), fake_mean.clone()
        else:
            self.real_ema = self.real_ema.to(real_mean.device)
            self.fake_ema = self.fake_ema.to(fake_mean.device)
            self.real_ema.lerp_(real_mean, 1.0 - self.decay)  # decay * ema + (1 - decay) * mean
            self.fake_ema.lerp_(fake_mean, 1.0 - self.decay)
        self.num_updates += 1
        penalty = F.relu(real_logits.float() - self.fake_ema).square().mean() + \
            F.relu(self.real_ema - fake_logits.float()).square().mean()
        return self.weight * penalty

    def state_dict(self) -> dict[str, Any]:
        """``{"real_ema", "fake_ema" (tensors or None), "num_updates"}``: copies, not views."""
        return {"real_ema": None if self.real_ema is None else self.real_ema.detach().clone(),
                "fake_ema": None if self.fake_ema is None else self.fake_ema.detach().clone(),
                "num_updates": self.num_updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (checked before anything changes)."""
        if not isinstance(state, dict) or not {"real_ema", "fake_ema", "num_updates"} <= set(state):
            raise ValueError(f"expected a LeCamRegularizer.state_dict() with real_ema, fake_ema and num_updates, "
                             f"got {sorted(state) if isinstance(state, dict) else type(state).__name__}")
        emas = state["real_ema"], state["fake_ema"]
        if (emas[0] is None) != (emas[1] is None) or any(
                e is not None and (not isinstance(e, torch.Tensor) or e.numel() != 1) for e in emas):
            raise ValueError(f"LeCam state: real_ema and fake_ema must both be 1-element tensors or both None, "
                             f"got {emas!r}")
        check_int("num_updates", state["num_updates"], minimum=0)
        self.real_ema = None if emas[0] is None else emas[0].detach().clone().float().reshape(())
        self.fake_ema = None if emas[1] is None else emas[1].detach().clone().float().reshape(())
        self.num_updates = state["num_updates"]


class LazyRegularizer:
    """Lazy regularisation: ``every * reg(...)`` on every ``every``-th call (the first included), else 0.

    StyleGAN2 evaluates R1 once every 16 discriminator minibatches: the penalty is
    expensive (a double backward) and changes slowly, and scaling it by the interval keeps
    its average strength. Pair it with :func:`lazy_adam_hparams` for the discriminator's
    optimizer, as StyleGAN2 does. The call counter is host-side (no synchronisation) and is
    saved by :meth:`state_dict`.

    Args:
        reg: The regularizer to thin out, e.g. ``R1Penalty(10)``: called
            ``reg(D, real, fake)``, or ``reg(real_logits, fake_logits)`` if it sets ``uses_logits``.
        every: The interval k (StyleGAN2: 16); 1 is the plain regularizer.

    Attributes:
        uses_logits: That of ``reg`` (an instance attribute: check it on the object).
        calls: Calls so far.
    """

    uses_logits = False

    def __init__(self, reg: Callable[..., torch.Tensor], every: int = 16) -> None:
        if not callable(reg):
            raise TypeError(f"reg must be a regularizer (a callable), got {type(reg).__name__}")
        self.reg = reg
        self.every = check_int("every", every)
        self.uses_logits = bool(getattr(reg, "uses_logits", False))
        self.calls = 0

    def __repr__(self) -> str:
        return f"LazyRegularizer({self.reg!r}, every={self.every})"

    def is_due(self) -> bool:
        """Whether the next call evaluates the regularizer."""
        return self.calls % self.every == 0

    def __call__(self, *args: Any) -> torch.Tensor:
        """``every * reg(*args)`` when due, else a zero on the device and in the dtype of the first tensor."""
        due = self.is_due()
        self.calls += 1
        if due:
            return self.every * self.reg(*args)
        like = next((a for a in args if isinstance(a, torch.Tensor)), None)
        if like is None:
            raise TypeError("LazyRegularizer needs a tensor argument (real, or the logits) to make its zero")
        return torch.zeros((), device=like.device, dtype=like.dtype if like.is_floating_point() else None)

    def state_dict(self) -> dict[str, Any]:
        """``{"calls", "every", "reg": the wrapped regularizer's state_dict() or None}``."""
        state_dict = getattr(self.reg, "state_dict", None)
        inner = state_dict() if callable(state_dict) else None
        return {"calls": self.calls, "every": self.every, "reg": inner}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the counter (and the wrapped regularizer's state); the interval stays this object's."""
        if not isinstance(state, dict) or "calls" not in state:
            raise ValueError(f"expected a LazyRegularizer.state_dict() with 'calls', got "
                             f"{sorted(state) if isinstance(state, dict) else type(state).__name__}")
        calls = check_int("calls", state["calls"], minimum=0)
        inner = state.get("reg")
        if inner is not None:
            if not callable(getattr(self.reg, "load_state_dict", None)):
                raise ValueError(f"the saved state holds the wrapped regularizer's state, but {self.reg!r} "
                                 "has no load_state_dict")
            self.reg.load_state_dict(inner)  # type: ignore[attr-defined]
        self.calls = calls


def lazy_adam_hparams(lr: float, betas: tuple[float, float], every: int) -> tuple[float, tuple[float, float]]:
    """Adam's learning rate and betas corrected for lazy regularisation every ``every`` steps (StyleGAN2).

    With ``c = every / (every + 1)``: ``(lr * c, (beta1 ** c, beta2 ** c))``. StyleGAN2 applies
    it to the optimizer of the network whose penalty is lazy, so that the regularised and
    plain steps together move the moving averages as ``every + 1`` plain steps would.

    Args:
        lr: The learning rate without lazy regularisation.
        betas: Adam's ``(beta1, beta2)`` without it.
        every: The lazy interval k (StyleGAN2: 16). A regularizer evaluated at every step
            needs no correction: keep the plain values then.

    Returns:
        ``(lr, (beta1, beta2))`` to give ``torch.optim.Adam``.
    """
    check_int("every", every)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or not lr > 0:
        raise ValueError(f"lr must be a finite float > 0, got {lr!r}")
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    b1 = _check_float("betas[0]", betas[0], 0.0, 1.0)
    b2 = _check_float("betas[1]", betas[1], 0.0, 1.0)
    c = every / (every + 1)
    return lr * c, (b1**c, b2**c)
