"""Layers for a CPU: ``MaskDropout`` (the builders' default) and an opt-in oneDNN ``Linear``.

The reference step on a 2-core CPU is mostly matmuls, and a seventh of it was dropout
drawing its masks (see docs/benchmarks.md). Both layers keep ``nn.Dropout``'s and
``nn.Linear``'s function, parameters and ``state_dict``:

- :class:`MaskDropout` (public operators only; the builders use it with
  ``fast_layers=True``, their default): each unit kept with probability ``1 - p`` and
  scaled by ``1 / (1 - p)``, as ``nn.Dropout``. On a CPU the mask is built from 32-bit
  words of torch's generator (two per ``random_`` draw, compared with a threshold)
  instead of ``bernoulli_``, which draws one double per unit; about 3x cheaper. The
  masks follow the same Bernoulli law (keep probability exact to 2**-32) but are a
  different random stream from ``nn.Dropout``'s. Off the CPU it calls ``F.dropout``.
- :class:`Linear` (**opt-in; relies on a private PyTorch operator**): float32 CPU forward
  and input-gradient products through ``torch.ops.mkldnn._linear_pointwise``, oneDNN's
  linear, an internal operator of Inductor with no compatibility promise. It is not on
  any default path: opt a built model in with :func:`use_onednn_linear`. Where it
  applies it agrees with ``nn.Linear`` to float rounding (another summation order);
  everywhere else (CUDA, autocast, ``torch.compile``, other dtypes, inputs that are
  not 2-D, a failed self-check) it *is* ``nn.Linear``. Its custom autograd function
  has no ``setup_context``, so ``torch.func`` transforms (vmap, per-sample gradients)
  do not support it. ``StepConfig(implementation="compiled")`` does not replace it: in training,
  Inductor keeps float32 products on MKL. docs/benchmarks.md has the numbers behind this choice.

The builders' ``fast_layers=True`` gives ``nn.Linear`` and :class:`MaskDropout`;
``fast_layers=False`` gives ``nn.Linear``/``nn.Dropout``, the tutorial's modules bit for bit.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from torchgan_lite.utils.checks import check_float

__all__ = ["Linear", "MaskDropout", "layer_types", "onednn_linear_available", "use_onednn_linear"]

# Below these sizes the fixed cost of a call (about 70 us for oneDNN's linear, about
# 100 us for the five small operators of a word mask, measured on the 2-core CPU) is
# more than it saves, so the layers call F.linear / F.dropout instead.
ONEDNN_MIN_MACS = 2**22  # rows * in * out: Linear(256, 512) on 128 rows is 2**24
WORD_MASK_MIN_NUMEL = 2**13  # units in one dropout call: (128, 256) is 2**15


def _onednn_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    # oneDNN's linear, the operator torch.compile's CPU backend uses; (B, out) = x @ w.T + b.
    # PRIVATE operator (opt-in only: Linear / use_onednn_linear).
    return torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")


@functools.cache
def onednn_linear_available() -> bool:
    """Whether :class:`Linear` can use oneDNN here: checked once, on fixed values.

    False where torch was built without oneDNN, where the operator is missing or has
    another signature, or where it disagrees with ``F.linear``; :class:`Linear` is then
    exactly ``nn.Linear``. The check draws no random numbers.
    """
    try:
        if not torch.backends.mkldnn.is_available():
            return False
        cpu = torch.device("cpu")  # explicit: a `with torch.device(...)` block must not move the check
        x = torch.linspace(-1, 1, 6 * 5, device=cpu).reshape(6, 5)  # (6, 5)
        w = torch.linspace(-2, 1, 3 * 5, device=cpu).reshape(3, 5)  # (3, 5)
        b = torch.tensor([0.5, -1.0, 2.0], device=cpu)
        g = torch.linspace(1, -1, 6 * 3, device=cpu).reshape(6, 3)  # (6, 3)
        ok = torch.allclose(_onednn_linear(x, w, b), F.linear(x, w, b), rtol=1e-5, atol=1e-5)
        ok = ok and torch.allclose(_onednn_linear(g, w.t(), None), g @ w, rtol=1e-5, atol=1e-5)
        return bool(ok)
    except (AttributeError, RuntimeError, TypeError, NotImplementedError):
        return False


def _dispatch_mode_on() -> bool:
    """Whether a TorchDispatchMode (FlopCounterMode, FakeTensorMode, ...) is active: such tools
    should see the standard aten products, which they know how to count or fake."""
    from torch.utils import _python_dispatch  # private module: reached only by the opt-in Linear

    return _python_dispatch._get_current_dispatch_mode() is not None


class _OneDNNLinearFn(torch.autograd.Function):
    """``x @ w.T + b`` with oneDNN products; the weight gradient stays on ``mm``, which is as fast."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        # Keep only what backward reads: x for the weight gradient, w for the input gradient.
        ctx.save_for_backward(x if w.requires_grad else None, w if x.requires_grad else None)
        return _onednn_linear(x, w, b)  # (B, out)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # grad (B, out)
        x, w = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        gx = gw = gb = None
        if torch.is_grad_enabled():
            # create_graph=True (a gradient penalty): differentiable ops, so the
            # gradient itself can be differentiated.
            if need_x:
                gx = grad @ w  # (B, in)
        elif need_x:
            gx = _onednn_linear(grad.contiguous(), w.t(), None)  # (B, in) = grad @ w
        if need_w:
            gw = grad.t() @ x  # (out, in)
        if need_b:
            gb = grad.sum(0)  # (out,)
        return gx, gw, gb


class Linear(nn.Linear):
    """``nn.Linear`` whose float32 CPU products run through oneDNN (see the module docstring).

    **Opt-in: relies on the private operator** ``torch.ops.mkldnn._linear_pointwise``.

    Same constructor, parameters, initialisation and ``state_dict`` as ``nn.Linear``;
    ``isinstance(layer, nn.Linear)`` holds. Takes the oneDNN path only for a 2-D float32
    CPU input and weight, outside autocast, ``torch.compile`` and dispatch modes such as
    ``FlopCounterMode`` (which then count its products), with at least
    :data:`ONEDNN_MIN_MACS` multiply-adds, where :func:`onednn_linear_available` is True;
    otherwise it calls ``F.linear`` (and ``torch.jit.script`` compiles only that).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in) -> (B, out)
        # read once: under a parametrization (torch's spectral norm) each read recomputes the weight
        weight = self.weight
        if not torch.jit.is_scripting():  # TorchScript compiles only F.linear below
            if _onednn_applies(x, weight, self.in_features * self.out_features):
                return _OneDNNLinearFn.apply(x.contiguous(), weight, self.bias)
        return F.linear(x, weight, self.bias)


def _onednn_applies(x: torch.Tensor, w: torch.Tensor, macs_per_row: int) -> bool:
    return (x.device.type == "cpu" and x.dim() == 2 and x.dtype == torch.float32 and w.dtype == torch.float32
            and x.layout == torch.strided and x.shape[0] * macs_per_row >= ONEDNN_MIN_MACS
            and not torch.compiler.is_compiling() and not torch.is_autocast_enabled("cpu") and not _dispatch_mode_on()
            and onednn_linear_available())


class MaskDropout(nn.Dropout):
    """``nn.Dropout`` with masks from 32-bit random words on a CPU (see the module docstring).

    A subclass of ``nn.Dropout`` (``p``, ``isinstance`` and ``eval()`` behave the same).
    Calls with fewer than :data:`WORD_MASK_MIN_NUMEL` units and off the CPU use ``F.dropout``.
    Under ``torch.compile`` the mask is one opaque custom operator (``torchgan_lite::word_mask``,
    ``torch.library.custom_op``), drawn from torch's generator as in eager mode.

    Args:
        p: Probability of zeroing a unit, in [0, 1).
    """

    def __init__(self, p: float) -> None:
        super().__init__(check_float("p", p, 0.0, 1.0, high_open=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if not torch.jit.is_scripting():  # TorchScript compiles only F.dropout below
            if (x.device.type == "cpu" and x.layout == torch.strided and 0 < self.p < 1
                    and x.numel() >= WORD_MASK_MIN_NUMEL):
                return _word_mask_dropout(x, self.p)
        return F.dropout(x, self.p, training=True)


def _word_mask(shape: list[int], p: float, dtype: torch.dtype) -> torch.Tensor:
    # A uniform int32 word w keeps its unit when w >= threshold: probability 1 - p, to 2**-32.
    threshold = min(-(2**31) + round(p * 2**32), 2**31 - 1)
    n = math.prod(shape)
    words = torch.empty((n + 1) // 2, dtype=torch.int64).random_(-(2**63), None)  # 64 uniform bits each
    bits = words.view(torch.int32)[:n].view(shape)  # (*shape) uniform int32
    mask = torch.ge(bits, threshold, out=torch.empty(shape, dtype=dtype))  # 1.0 keep, 0.0 drop
    return mask.mul_(1.0 / (1.0 - p))  # 0 or 1/(1-p), in dtype


@torch.library.custom_op("torchgan_lite::word_mask", mutates_args=())
def _word_mask_op(x: torch.Tensor, p: float) -> torch.Tensor:
    """:func:`_word_mask` for ``x``'s shape and dtype as one opaque operator, for ``torch.compile``.

    The graph calls it instead of tracing the draw, so a compiled step draws its masks
    from torch's CPU generator as the eager step does (Inductor's own per-element
    generator is about 10x slower on the CPUs measured). ``x`` (detached) is an input
    only so that two calls on different tensors are never merged into one mask.
    """
    return _word_mask(list(x.shape), p, x.dtype)


@_word_mask_op.register_fake
def _(x: torch.Tensor, p: float) -> torch.Tensor:
    return torch.empty(x.shape, dtype=x.dtype)


def _word_mask_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    if torch.compiler.is_compiling():
        return x * _word_mask_op(x.detach(), p)
    return x * _word_mask(list(x.shape), p, x.dtype)


def layer_types(fast: bool) -> tuple[type[nn.Linear], type[nn.Dropout]]:
    """The builders' ``fast_layers`` choice: ``(nn.Linear, MaskDropout)``, else ``(nn.Linear, nn.Dropout)``.

    Public PyTorch only either way; the oneDNN :class:`Linear` is opt-in (:func:`use_onednn_linear`).
    """
    return (nn.Linear, MaskDropout) if fast else (nn.Linear, nn.Dropout)


def use_onednn_linear(module: nn.Module) -> nn.Module:
    """Opt ``module``'s ``nn.Linear`` layers into :class:`Linear`, in place; returns ``module``.

    **Relies on a private PyTorch operator** (``torch.ops.mkldnn._linear_pointwise``; see
    the module docstring). Each submodule whose type is exactly ``nn.Linear`` becomes a
    :class:`Linear`, keeping its parameters, ``state_dict`` and function; subclasses of
    ``nn.Linear`` are left alone. Do it before building optimizers or compiling: the
    parameters are the same objects, so existing references stay valid either way.

    Args:
        module: A built network, e.g. ``mlp_discriminator()``.

    Raises:
        TypeError: ``module`` is not an ``nn.Module``.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
    for m in module.modules():
        if type(m) is nn.Linear:
            m.__class__ = Linear  # no new state: Linear only changes forward
    return module
