"""The whole training step as one CUDA graph: ``StepConfig(implementation="cuda_graph")``.

On a GPU the reference model is launch-bound: a step is about 175 small kernels and
about 4 GFLOP, so Python dispatch and kernel launches, not arithmetic, set its speed.
:class:`CudaGraphStep` is a :class:`~torchgan_lite.training.step.GANStep` whose ``step`` records
the eager step once and then replays it with a single launch:

- the batch is copied into a static input buffer the graph owns (one device-to-device
  copy), so the step stays a plain function of tensors and the trainer's one loop
  serves it like any other step;
- the noise, the dropout masks, the ``n_critic`` discriminator updates, the generator
  update and both Adam steps (``capturable=True``) are inside the graph; the results
  are static device tensors, overwritten by each replay;
- the non-finite check is the deferred one (``nonfinite=N``): device-side, no host read.

Eager warm-up steps (real training steps, on a side stream) come first, as CUDA graphs
require. The RNG is torch's default CUDA generator, whose Philox offsets advance per
replay exactly as the eager kernels would. A batch of another shape (a last partial
batch) runs eagerly.

The trainer runs the eager step instead, with a warning that says why, where capture
cannot work: see :func:`capture_unsupported_reason`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from torchgan_lite.training.guard import NonFinitePolicy
from torchgan_lite.training.state import StepResult
from torchgan_lite.training.step import GANStep

__all__ = ["WARMUP_STEPS", "CudaGraphStep", "capture_unsupported_reason"]

#: Eager steps before capture: lets cuBLAS, the allocator and Adam's state settle (PyTorch's docs use 3).
WARMUP_STEPS = 3


def capture_unsupported_reason(device: torch.device, regularizers: Sequence[Any], world_size: int,
                               policy: NonFinitePolicy, g_optimizer: torch.optim.Optimizer,
                               d_optimizer: torch.optim.Optimizer) -> str | None:
    """Why a step with these parts cannot run as a CUDA graph, or None when it can."""
    if device.type != "cuda":
        return f"CUDA graphs need a CUDA device; this trainer is on {device}"
    if regularizers:
        return "regularizers take a double backward (or keep host-side counters), which is not captured here"
    if world_size > 1:
        return "data-parallel all-reduces are not captured here"
    if policy.every == 1:
        return "nonfinite checks every update on the host; use StepConfig(nonfinite=N) (the CUDA default) or 0"
    for name, opt in (("g_optimizer", g_optimizer), ("d_optimizer", d_optimizer)):
        if not opt.defaults.get("capturable", False):
            return f"{name} was not built with capturable=True (e.g. torch.optim.Adam(..., capturable=True))"
    return None


class CudaGraphStep(GANStep):
    """A :class:`GANStep` recorded once as a CUDA graph and replayed (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["autocast_cache"] = False  # autocast's weight cache cannot live across replays
        super().__init__(*args, **kwargs)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.eager_steps = 0
        self._real: torch.Tensor | None = None  # (B, *sample_shape) static input
        self._labels: torch.Tensor | None = None  # (B,) static input (conditional)
        self._out: StepResult | None = None  # static outputs of the captured step

    def step(self, real: torch.Tensor, labels: torch.Tensor | None = None) -> StepResult:
        """Copy the batch into the graph's inputs and replay (warm-up and capture come first)."""
        if self._real is not None and real.shape != self._real.shape:
            return super().step(real, labels)  # e.g. a last partial batch: eager, outside the graph
        if self._real is None:
            self._real = torch.empty_like(real)
            self._labels = None if labels is None else torch.empty_like(labels)
        self._real.copy_(real, non_blocking=True)
        if labels is not None and self._labels is not None:
            self._labels.copy_(labels, non_blocking=True)
        if self.graph is None:
            if self.eager_steps < WARMUP_STEPS:
                side = torch.cuda.Stream(device=self.device)
                side.wait_stream(torch.cuda.current_stream(self.device))
                with torch.cuda.stream(side):
                    result = super().step(self._real, self._labels)
                torch.cuda.current_stream(self.device).wait_stream(side)
                self.eager_steps += 1
                return result
            self._capture()
        assert self.graph is not None and self._out is not None
        self.graph.replay()
        return self._out

    def _capture(self) -> None:
        self.g_optimizer.zero_grad(set_to_none=True)
        self.d_optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize(self.device)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):  # records the kernels without running them
            self._out = super().step(self._real, self._labels)  # type: ignore[arg-type]
        self.graph = graph

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore, then capture again: the optimizers' state tensors were replaced."""
        super().load_state_dict(state)
        self.graph, self.eager_steps, self._out = None, 0, None
