"""Discriminator regularizers beyond the penalties of losses.py: LeCam, lazy regularisation, spectral norm.

Like :mod:`torchgan_lite.losses`, these only compute values: the step adds them to the
discriminator's loss and does the one backward pass (docs/architecture.md).

- :class:`LeCamRegularizer` (Tseng et al. 2021, "Regularizing Generative Adversarial
  Networks under Limited Data"): anchors D's outputs to moving averages of its outputs
  on the other side. Its class sets ``uses_logits = True``, so the step calls it
  ``reg(real_logits, fake_logits)`` and it costs no extra discriminator call.
- :class:`LazyRegularizer` (Karras et al. 2020, StyleGAN2, section 3.1): evaluates an
  expensive penalty (R1, a gradient penalty) every ``every``-th call only, scaled by
  ``every`` so its average strength is unchanged; :func:`lazy_adam_hparams` is the
  matching correction of Adam's learning rate and betas.
- :func:`apply_spectral_norm` (Miyato et al. 2018): spectral normalisation of every
  linear and convolutional layer of a discriminator, through
  ``torch.nn.utils.parametrizations.spectral_norm`` or, for Linear layers, the cheaper
  :func:`torchgan_lite.spectral.spectral_norm_output` (the same function).

The moving averages and the call counter are state: ``state_dict``/``load_state_dict``
save and restore them, so that a resumed run computes exactly the same penalties.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from .spectral import OutputSpectralNorm, spectral_norm_output
from .utils import check_int

__all__ = ["LazyRegularizer", "LeCamRegularizer", "apply_spectral_norm", "lazy_adam_hparams"]


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
        reg: The regularizer to thin out, e.g. ``losses.R1Penalty(10)``: called
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


_NORMED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


_METHODS = ("auto", "parametrization", "output")


def _spectral_normed(layer: nn.Module) -> bool:
    """Whether ``layer`` is spectral-normalised already, by its output hook or by torch's parametrization."""
    if isinstance(getattr(layer, "output_spectral_norm", None), OutputSpectralNorm):
        return True
    return parametrize.is_parametrized(layer, "weight") and any(
        type(p).__name__ == "_SpectralNorm" for p in cast(Any, layer).parametrizations["weight"])


def apply_spectral_norm(module: nn.Module, n_power_iterations: int = 1, eps: float = 1e-12,
                        method: str = "auto") -> nn.Module:
    """Spectral-normalise every Linear/Conv/ConvTranspose layer of ``module``, in place.

    Two implementations of the same function (Miyato et al. 2018; one power iteration per
    training forward; the singular vectors are buffers, so they are saved in the module's
    ``state_dict`` and restored by ``load_state_dict``):

    - ``torch.nn.utils.parametrizations.spectral_norm``: ``weight`` becomes ``W / sigma``,
      recomputed on every forward (``state_dict`` keys ``parametrizations.weight.original``,
      ``..._u``, ``..._v``);
    - :func:`torchgan_lite.spectral.spectral_norm_output`, Linear layers only: the layer's
      output is rescaled instead, ``(x W^T) / sigma + b`` (keys ``weight``, ``weight_u``,
      ``weight_v``; ``weight`` stays unnormalised). The same values and gradients up to
      rounding, and the division's backward touches the (B, out) output instead of the
      (out, in) weight: the reference MLP discriminator's CPU step costs 1.41x the plain
      step with the first, 1.13x with the second (docs/benchmarks.md).

    Subclasses count (``torchgan_lite.layers.Linear`` included). Layers already
    spectral-normalised by either are left as they are.

    Note: the ``state_dict`` keys change: apply it before building the optimizer and before
    loading a checkpoint saved with spectral norm, with the same ``method``.

    Args:
        module: The discriminator (or any module).
        n_power_iterations: Power iterations per forward (Miyato et al.: 1).
        eps: Numerical floor of the norms.
        method: ``"auto"``: Linear layers by the output, the others by torch's
            parametrization; ``"parametrization"``: torch's for every layer; ``"output"``:
            the output for every layer, which must then all be Linear.

    Returns:
        ``module`` itself.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    check_int("n_power_iterations", n_power_iterations)
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    found = [(name, layer) for name, layer in module.named_modules() if isinstance(layer, _NORMED)]
    if not found:
        raise ValueError(f"module has no Linear or Conv layer to spectral-normalise: {type(module).__name__}")
    if method == "output":
        for name, layer in found:
            if not isinstance(layer, nn.Linear):
                raise ValueError(f"method='output' normalises Linear layers only, but {name or 'module'} is a "
                                 f"{type(layer).__name__}: use method='auto' or 'parametrization'")
    for _, layer in found:
        if _spectral_normed(layer):
            continue
        if isinstance(layer, nn.Linear) and method != "parametrization":
            spectral_norm_output(layer, n_power_iterations=n_power_iterations, eps=eps)
        else:
            spectral_norm(layer, n_power_iterations=n_power_iterations, eps=eps)
    return module
