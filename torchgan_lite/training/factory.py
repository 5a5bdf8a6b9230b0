"""Which training-step implementation a trainer runs: the factory behind ``capture=``, ``compile=``, ``step_class=``.

Each implementation is a :class:`~torchgan_lite.training.step.GANStep` (or a subclass) built
from the same arguments; the choice is made here once, so no step branches on it:

- :class:`~torchgan_lite.training.step.GANStep`: the eager step, the default;
- :class:`~torchgan_lite.training.graphed.CudaGraphStep`: ``capture="cuda_graph"``, where capture can work
  (else the eager step, with a warning saying why);
- :class:`~torchgan_lite.training.compiled.CompiledGANStep`: ``compile=True``;
- any ``step_class`` the user passes (e.g. :class:`~torchgan_lite.training.fused.FusedDiscriminatorStep`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from torchgan_lite.training.guard import NonFinitePolicy, OnBad
from torchgan_lite.training.step import GANStep
from torchgan_lite.training.validation import check_optimizer

__all__ = ["build_step", "default_adam"]


def default_adam(params: Iterable[nn.Parameter], capturable: bool = False) -> torch.optim.Adam:
    """The recipe's ``Adam(lr=2e-4)`` with PyTorch's default betas, as one fused kernel per group.

    ``capturable``: the step count lives on the device, so a CUDA graph can replay it.
    """
    return torch.optim.Adam(params, lr=2e-4, fused=True, capturable=capturable)


def build_step(generator: nn.Module, discriminator: nn.Module, loss: Any,
               g_optimizer: torch.optim.Optimizer | None, d_optimizer: torch.optim.Optimizer | None, *,
               device: torch.device, policy: NonFinitePolicy, on_bad: OnBad, capture: str | None, compile: bool,
               step_class: type[GANStep] | None, **kwargs: Any) -> GANStep:
    """The step a trainer with these options runs; ``kwargs`` go to the step's constructor.

    Also builds the parts a step takes from the run's set-up: the default optimizers, the
    guard of ``policy`` (agreeing across ranks) and, on several processes, the gradient sync.
    """
    if step_class is not None and not (isinstance(step_class, type) and issubclass(step_class, GANStep)):
        raise TypeError(f"step_class must be a GANStep subclass, got {step_class!r}")
    capturable = capture is not None and device.type == "cuda"
    g_opt = g_optimizer if g_optimizer is not None else default_adam(generator.parameters(), capturable)
    d_opt = d_optimizer if d_optimizer is not None else default_adam(discriminator.parameters(), capturable)
    check_optimizer("g_optimizer", g_opt, generator, "generator")
    check_optimizer("d_optimizer", d_opt, discriminator, "discriminator")
    w = kwargs.get("world_size", 1)
    if w > 1:
        from torchgan_lite.utils import distributed as dist_utils

        kwargs["sync"] = dist_utils.AllReduceSync(w)
        kwargs["guard"] = policy.make_guard(device, on_bad,
                                            agree_ok=lambda t: dist_utils.all_reduce_min(t.float(), w) > 0,
                                            agree_max=lambda t: dist_utils.all_reduce_max(t, w))
    else:
        kwargs["guard"] = policy.make_guard(device, on_bad)
    cls: type[GANStep] = GANStep
    if capture == "cuda_graph":
        from torchgan_lite.training.graphed import CudaGraphStep, capture_unsupported_reason

        reason = capture_unsupported_reason(device, kwargs.get("regularizers", ()), kwargs.get("world_size", 1),
                                            policy, g_opt, d_opt)
        if reason is None:
            cls = CudaGraphStep
        else:
            warnings.warn(f"capture='cuda_graph' is not available, so the eager step runs: {reason}", stacklevel=3)
    if compile:
        from torchgan_lite.training.compiled import CompiledGANStep

        cls = CompiledGANStep
    if step_class is not None:
        cls = step_class
    return cls(generator, discriminator, loss, g_opt, d_opt, **kwargs)
