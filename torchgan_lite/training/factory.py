"""The one way to choose and configure a training step: :class:`StepConfig` and :func:`build_step`.

A step is built from parts (generator, discriminator, loss, optimizers) and one small
frozen value that says how it trains (``StepConfig``). The implementation is one field of
that value, so no step branches on it and no trainer argument overrides another:

- ``"eager"``: :class:`~torchgan_lite.training.step.GANStep`, the default;
- ``"compiled"``: :class:`~torchgan_lite.training.compiled.CompiledGANStep` (``torch.compile``);
- ``"cuda_graph"``: :class:`~torchgan_lite.training.graphed.CudaGraphStep`, where capture can work
  (else the eager step, with a warning saying why);
- ``"fused"``: :class:`~torchgan_lite.training.fused.FusedDiscriminatorStep` (one D call on real and fake);
- a :class:`~torchgan_lite.training.step.GANStep` subclass of your own, built with the same arguments.

``GANTrainer(g, d, loss, step=StepConfig(...))`` hands its parts to :func:`build_step`;
``GANTrainer(step=build_step(...))`` takes a step built here (or by hand) as it is.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from torchgan_lite.training.guard import NonFinitePolicy
from torchgan_lite.training.step import GANStep
from torchgan_lite.training.validation import check_optimizer, check_parts
from torchgan_lite.utils import distributed as dist_utils
from torchgan_lite.utils.checks import check_int, describe
from torchgan_lite.utils.runtime import fast_autocast, resolve_device

__all__ = ["IMPLEMENTATIONS", "StepConfig", "build_step", "default_adam"]

#: The implementations :class:`StepConfig` names (a GANStep subclass is accepted too).
IMPLEMENTATIONS = ("eager", "compiled", "cuda_graph", "fused")


@dataclass(frozen=True)
class StepConfig:
    """How a step trains, apart from its parts: one value, checked once, saved with the run.

    Attributes:
        n_critic: Discriminator updates per generator update (5 for WGAN-GP).
        regularizers: Penalties added to the discriminator loss inside its one backward
            (``reg(D, real, fake)``, or ``reg(real_logits, fake_logits)`` with ``uses_logits = True``).
        amp: None (float32, the recipe's numerics), ``"bf16"`` (bfloat16 autocast of the forwards), or
            ``"auto"``: bf16 where it is a speed-up on the step's device (:func:`~torchgan_lite.fast_autocast`:
            a CPU with AVX512-BF16/AMX, a CUDA GPU with bf16), else float32.
        augment: ``x -> x`` applied to every discriminator input (DiffAugment, ADA), or None.
        nonfinite: ``"auto"`` (every update on a CPU, every 100 steps on an accelerator), an int
            (0: off, N: every N steps) or a :class:`~torchgan_lite.NonFinitePolicy`.
        implementation: One of :data:`IMPLEMENTATIONS` or a ``GANStep`` subclass.

    Raises:
        TypeError, ValueError: naming the field, for a value that cannot work.
    """

    n_critic: int = 1
    regularizers: Sequence[Any] = field(default=())
    amp: str | None = None
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None
    nonfinite: NonFinitePolicy | int | str = "auto"
    implementation: str | type[GANStep] = "eager"

    def __post_init__(self) -> None:
        check_int("StepConfig.n_critic", self.n_critic, 1)
        regs = self.regularizers
        if isinstance(regs, (str, bytes)) or not isinstance(regs, Sequence):
            raise TypeError(f"StepConfig.regularizers must be a sequence of callables, got {describe(regs)}")
        for i, reg in enumerate(regs):
            if isinstance(reg, type):
                raise TypeError(f"StepConfig.regularizers[{i}] must be an instance, got the class {reg.__name__}: "
                                f"write {reg.__name__}(...)")
            if not callable(reg):
                raise TypeError(f"StepConfig.regularizers[{i}] must be callable as reg(D, real, fake), "
                                f"got {describe(reg)}")
        object.__setattr__(self, "regularizers", tuple(regs))
        if self.augment is not None and (isinstance(self.augment, type) or not callable(self.augment)):
            raise TypeError(f"StepConfig.augment must be None or a callable x -> x (an instance), "
                            f"got {describe(self.augment)}")
        if self.amp not in (None, "bf16", "auto"):
            raise ValueError(f"StepConfig.amp must be None, 'bf16' or 'auto', got {self.amp!r}")
        impl = self.implementation
        if isinstance(impl, type):
            if not issubclass(impl, GANStep):
                raise TypeError(f"StepConfig.implementation must be one of {IMPLEMENTATIONS} or a GANStep "
                                f"subclass, got the class {impl.__qualname__}")
        elif not isinstance(impl, str) or impl not in IMPLEMENTATIONS:
            raise ValueError(f"StepConfig.implementation must be one of {IMPLEMENTATIONS} or a GANStep subclass, "
                             f"got {describe(impl)}")
        NonFinitePolicy.parse(self.nonfinite, torch.device("cpu"))  # checks the value; resolved per device later


def default_adam(params: Iterable[nn.Parameter], capturable: bool = False) -> torch.optim.Adam:
    """The recipe's ``Adam(lr=2e-4)`` with PyTorch's default betas, as one fused kernel per group.

    ``capturable``: the step count lives on the device, so a CUDA graph can replay it.
    """
    return torch.optim.Adam(params, lr=2e-4, fused=True, capturable=capturable)


def _step_class(impl: str | type[GANStep]) -> type[GANStep]:
    if isinstance(impl, type):
        return impl
    if impl == "compiled":
        from torchgan_lite.training.compiled import CompiledGANStep

        return CompiledGANStep
    if impl == "fused":
        from torchgan_lite.training.fused import FusedDiscriminatorStep

        return FusedDiscriminatorStep
    if impl == "cuda_graph":
        from torchgan_lite.training.graphed import CudaGraphStep

        return CudaGraphStep
    return GANStep


def build_step(generator: nn.Module, discriminator: nn.Module, loss: Any, config: StepConfig | None = None, *,
               g_optimizer: torch.optim.Optimizer | None = None, d_optimizer: torch.optim.Optimizer | None = None,
               latent_dim: int | None = None, device: torch.device | str | None = None,
               rank: int = 0, world_size: int = 1) -> GANStep:
    """Build the training step ``config`` describes, from its parts.

    Args:
        generator: ``G(z) -> (B, *sample_shape)`` (conditional, with ``num_classes``: ``G(z, y)``).
        discriminator: ``D(x) -> (B,)`` or ``(B, 1)`` logits (conditional: ``D(x, y)``).
        loss: ``discriminator_loss(real_logits, fake_logits)`` and ``generator_loss(fake_logits)``.
        config: How it trains (:class:`StepConfig`; None: the defaults).
        g_optimizer, d_optimizer: Over each network's parameters. Default: the recipe's Adam(2e-4).
        latent_dim: Noise size. None: the generator's ``latent_dim`` attribute.
        device: Where the step runs (the networks are moved there). None: where the generator is.
        rank, world_size: This process's place in a data-parallel group (``world_size > 1`` adds the
            gradient all-reduce and makes every rank's guard agree).

    Returns:
        A :class:`~torchgan_lite.training.step.GANStep` (or the subclass the config names).

    Raises:
        TypeError, ValueError: naming the argument, for parts that cannot work together.
    """
    config = StepConfig() if config is None else config
    if not isinstance(config, StepConfig):
        raise TypeError(f"config must be a StepConfig, got {describe(config)}")
    latent_dim, num_classes = check_parts(generator, discriminator, loss, latent_dim)
    check_int("world_size", world_size, 1)
    check_int("rank", rank, 0)
    if rank >= world_size:
        raise ValueError(f"rank must be < world_size={world_size}, got {rank}")
    dev = resolve_device(device) if device is not None else next(iter(generator.parameters())).device
    generator, discriminator = generator.to(dev), discriminator.to(dev)
    policy = NonFinitePolicy.parse(config.nonfinite, dev)
    amp = fast_autocast(dev) if config.amp == "auto" else config.amp
    cls = _step_class(config.implementation)
    capturable = config.implementation == "cuda_graph" and dev.type == "cuda"
    g_opt = g_optimizer if g_optimizer is not None else default_adam(generator.parameters(), capturable)
    d_opt = d_optimizer if d_optimizer is not None else default_adam(discriminator.parameters(), capturable)
    check_optimizer("g_optimizer", g_opt, generator, "generator")
    check_optimizer("d_optimizer", d_opt, discriminator, "discriminator")
    kwargs: dict[str, Any] = {}
    if world_size > 1:
        w = world_size
        kwargs["sync"] = dist_utils.AllReduceSync(w)
        kwargs["guard"] = policy.make_guard(dev, agree_ok=lambda t: dist_utils.all_reduce_min(t.float(), w) > 0,
                                            agree_max=lambda t: dist_utils.all_reduce_max(t, w))
    else:
        kwargs["guard"] = policy.make_guard(dev)
    if config.implementation == "cuda_graph":
        from torchgan_lite.training.graphed import capture_unsupported_reason

        reason = capture_unsupported_reason(dev, config.regularizers, world_size, policy, g_opt, d_opt)
        if reason is not None:
            warnings.warn(f"implementation='cuda_graph' is not available, so the eager step runs: {reason}",
                          stacklevel=3)
            cls = GANStep
    return cls(generator, discriminator, loss, g_opt, d_opt, latent_dim=latent_dim, num_classes=num_classes,
               n_critic=config.n_critic, regularizers=config.regularizers, amp=amp, augment=config.augment,
               rank=rank, world_size=world_size, **kwargs)
