"""The training step through ``torch.compile``: ``StepConfig(implementation="compiled")``.

:class:`CompiledGANStep` is a :class:`~torchgan_lite.training.step.GANStep` whose two updates
run their forward passes and losses as two compiled functions, built once:

- ``D update``: ``G(z)`` without a graph, the augmentation, ``D(real)``, ``D(fake)`` and
  ``loss.discriminator_loss`` in one compiled function; its backward is the backward
  graph that ``torch.compile`` (AOTAutograd) compiles with it, run by ``d_loss.backward()``;
- ``G update``: ``G(z)``, the augmentation, ``D`` (frozen) and ``loss.generator_loss``,
  likewise; for a relativistic loss (``needs_real_logits``, e.g. RpGAN) ``D(real)`` too, in
  the same compiled function.

Inductor fuses the elementwise work around the products (bias, LeakyReLU, dropout, the
loss, autocast's weight casts) into a few loops and calls MKL/oneDNN for the products
(float32 training products stay on MKL's ``addmm``/``mm``, as in eager mode). Whether
that is faster than the eager step depends on the machine (docs/benchmarks.md).

The numbers are those of the eager step to float rounding, with dropout on too for
:class:`~torchgan_lite.nets.layers.MaskDropout` (the builders' default), whose mask is one
opaque custom operator drawn from torch's generator as in eager mode; ``nn.Dropout``'s
masks and DiffAugment's draws come from Inductor's generator, a different random stream.

What stays eager, each for a reason given in :attr:`CompiledGANStep.eager_parts`:

- noise: drawn by :meth:`GANStep.noise` from torch's generator, so the compiled and the
  eager step see the same ``z`` (Inductor would draw another stream);
- the optimizer steps: the default ``Adam(fused=True)`` is already one fused kernel per
  parameter group, and ``torch.compile`` does not trace fused optimizers;
- the guard's checks (host reads) and the data-parallel gradient sync (collectives);
- regularizers called on logits (LeCam): added after the compiled forward, since their
  moving averages are Python state that would be baked into the graph;
- a discriminator update with a regularizer called on D (R1, gradient penalty): it takes
  a double backward (``create_graph=True``), which compiled graphs do not support, so
  that whole update runs eagerly (the generator update is still compiled).

Recompilation: the functions are compiled with ``dynamic=False`` (static shapes, the
fastest code), so each distinct batch size compiles once (a short last batch: one
more compile in the first epoch, none after). Nothing else that changes between steps
is seen by the guards: the step always runs in ``train()`` mode and the same ``requires_grad``
pattern, learning rates live in the eager optimizers, and DiffAugment's probability is a
tensor buffer. ``torch.compiler.set_stance("fail_on_recompile")`` around a warmed-up run
turns any recompile into an error (the tests do this).

The first steps are slow while Inductor compiles (60-100 s for the reference model on
the 2-core CPU measured, a few seconds with its on-disk cache warm); docs/benchmarks.md
says when that pays (on that CPU, not yet: the compiled step is not faster there).
"""

from __future__ import annotations

from typing import Any

import torch

from torchgan_lite.training.step import GANStep

__all__ = ["CompiledGANStep"]


class CompiledGANStep(GANStep):
    """:class:`~torchgan_lite.training.step.GANStep` with each update's forward and loss compiled.

    Takes exactly :class:`~torchgan_lite.training.step.GANStep`'s arguments, plus ``compile_options``
    (keywords for ``torch.compile``, e.g. ``{"mode": "max-autotune-no-cudagraphs"}``;
    default ``{"dynamic": False}``). See the module docstring for what is compiled.

    Attributes:
        eager_parts: ``{part: reason}`` for each part of the step that runs eagerly.
    """

    def __init__(self, *args: Any, compile_options: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if compile_options is not None and not isinstance(compile_options, dict):
            raise TypeError(f"compile_options must be a dict of torch.compile keywords, got {compile_options!r}")
        options: dict[str, Any] = {"dynamic": False, **(compile_options or {})}
        self.eager_parts: dict[str, str] = {
            "noise": "drawn eagerly from torch's generator, so the compiled step sees the eager step's noise",
            "optimizer steps": "fused Adam is one kernel per parameter group already; torch.compile does not "
                               "trace fused optimizers",
            "guard and gradient sync": "host reads and collectives, between the compiled forward and the update",
        }
        if self._logit_regs:
            self.eager_parts["logit regularizers"] = ("added after the compiled forward: their moving averages "
                                                      "are Python state a graph would freeze")
        if self._input_regs:
            names = ", ".join(type(r).__name__ for r in self._input_regs)
            self.eager_parts["discriminator update"] = (f"{names} takes a double backward (create_graph=True), "
                                                        "which compiled graphs do not support")
        else:
            self._d_forward = torch.compile(self.discriminator_forward, **options)
        self._g_forward = torch.compile(self.generator_forward, **options)
