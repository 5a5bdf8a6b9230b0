"""FusedDiscriminatorStep: the step with one discriminator call on ``cat([real, fake])``, always.

One backward instead of two summed gradient sets, larger matmuls, fewer kernels (on a
GPU the step is launch-bound, so kernels count). The same math as
:class:`~torchgan_lite.training.step.GANStep` for a discriminator that treats samples
independently (its dropout masks are drawn in another order); wrong for one with batch
statistics, which it refuses. :class:`~torchgan_lite.training.step.GANStep` already scores in one
call a discriminator that declares ``independent_samples = True`` (the library's MLP
discriminators); this class is for your own discriminator that does not declare it. Opt in
with ``StepConfig(implementation="fused")``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from torchgan_lite.training.step import GANStep, batch_norm_in

__all__ = ["FusedDiscriminatorStep"]


class FusedDiscriminatorStep(GANStep):
    """A :class:`GANStep` that scores real and fake in one discriminator call (see the module docstring)."""

    def __init__(self, generator: nn.Module, discriminator: nn.Module, *args: Any, **kwargs: Any) -> None:
        norm = batch_norm_in(discriminator)
        if norm is not None:
            raise ValueError(f"FusedDiscriminatorStep would mix real and fake batch statistics in the "
                             f"discriminator's {norm}; use GANStep for this discriminator")
        super().__init__(generator, discriminator, *args, **kwargs)
        self._score_once = True  # GANStep.score: one call on cat([real, fake])
