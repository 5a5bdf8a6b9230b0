"""The whole training step as one CUDA graph: ``GANTrainer(..., capture="cuda_graph")``.

On a GPU the reference model is launch-bound: a step is about 175 small kernels
and about 4 GFLOP, so Python dispatch and kernel launches, not arithmetic, set
its speed. Here the step is recorded once and replayed with a single launch:

- the batch is gathered on the device from the epoch's permutation, indexed by a
  device-side step counter (no host-to-device copy, no Python per batch);
- the noise, the dropout masks, the ``n_critic`` discriminator updates, the
  generator update and both Adam steps (``capturable=True``) are all inside;
- the losses are written into static device tensors and summed into the epoch
  means on the device; the finiteness check is the deferred one (``check_finite=N``).

Eager warm-up steps (real training steps, on a side stream) come first, as CUDA
graphs require; the graph is captured after them and replayed for every later
step. The RNG is torch's default CUDA generator, whose Philox offsets advance per
replay exactly as the eager kernels would advance them.

The trainer falls back to the eager step, with a warning that says why, where
capture cannot work: not on CUDA, regularizers (their double backward), several
processes, the ``fast=False`` path, data that is not a device-resident
:class:`~torchgan_lite.data.TensorLoader`, or optimizers without ``capturable``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from .events import Event
from .state import StepResult

if TYPE_CHECKING:
    from .data import TensorLoader
    from .trainer import GANTrainer

__all__ = ["WARMUP_STEPS", "CudaGraphStep", "capture_unsupported_reason", "graph_step_for", "run_graphed_loop"]

#: Eager steps before capture: lets cuBLAS, the allocator and Adam's state settle (PyTorch's docs use 3).
WARMUP_STEPS = 3


def capture_unsupported_reason(trainer: GANTrainer) -> str | None:
    """Why ``trainer`` cannot run its step as a CUDA graph, or None when it can."""
    if trainer.device.type != "cuda":
        return f"CUDA graphs need a CUDA device; this trainer is on {trainer.device}"
    if not trainer.fast:
        return "the fast=False path reads losses on the host every step"
    if trainer.regularizers:
        return "regularizers take a double backward, which is not captured here"
    if trainer.world_size > 1:
        return "data-parallel all-reduces are not captured here"
    if trainer.check_finite is True:
        return "check_finite=True reads each loss on the host; use check_finite=N (the CUDA default) or False"
    for name in ("g_optimizer", "d_optimizer"):
        opt = getattr(trainer, name)
        if not opt.defaults.get("capturable", False):
            return f"{name} was not built with capturable=True (e.g. torch.optim.Adam(..., capturable=True))"
    return None


class CudaGraphStep:
    """One captured training step over one device-resident TensorLoader.

    Built by the trainer on the first graphed ``fit`` over a loader; the trainer
    calls :meth:`start_epoch` when the loader begins or resumes an epoch and
    :meth:`step` for every batch.
    """

    def __init__(self, trainer: GANTrainer, loader: TensorLoader) -> None:
        self.trainer = trainer
        self.loader = loader
        dev = trainer.device
        b = loader.batch_size
        self.batch_size = b
        self.tensors = loader.tensors
        self.perm = torch.empty(loader.num_samples, dtype=torch.int64, device=dev)  # (N,) the epoch's order
        self.counter = torch.zeros((), dtype=torch.int64, device=dev)  # batches served this epoch
        self.global_step = torch.zeros((), dtype=torch.int64, device=dev)  # for the deferred finite check
        self.arange = torch.arange(b, device=dev)  # (B,)
        self.out = torch.zeros(4, device=dev)  # (d_loss, g_loss, d_real, d_fake) of the last replay
        self.one = torch.ones((), device=dev)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.eager_steps = 0

    def matches(self, loader: TensorLoader) -> bool:
        """Whether this capture can serve ``loader`` (same tensors, same batch size)."""
        return (loader.batch_size == self.batch_size and len(loader.tensors) == len(self.tensors)
                and all(a is b for a, b in zip(loader.tensors, self.tensors)))

    def start_epoch(self) -> None:
        """Copy the loader's current permutation and position into the static buffers."""
        loader = self.loader
        if loader._perm is None or loader._pos >= len(loader):
            loader._new_epoch()
        assert loader._perm is not None
        self.perm.copy_(loader._perm, non_blocking=True)
        self.counter.fill_(loader._pos)

    def _body(self) -> None:
        """The step, written with device tensors only: what is captured."""
        t = self.trainer
        idx = self.perm.index_select(0, self.counter * self.batch_size + self.arange)  # (B,)
        real = self.tensors[0].index_select(0, idx)  # (B, *sample_shape)
        labels = self.tensors[1].index_select(0, idx) if t.num_classes is not None else None
        for _ in range(t.n_critic):
            d_loss, d_real, d_fake = t._discriminator_update(real, labels)
        g_loss = t._generator_update(self.batch_size)
        values = torch.stack([d_loss, g_loss, d_real, d_fake]).float()
        self.out.copy_(values)
        t._epoch_sums.add_(torch.cat([values, self.one.view(1)]))
        self.counter.add_(1)
        self.global_step.add_(1)
        bad = ~torch.isfinite(values[:2]).all()
        t._first_bad_step.copy_(torch.where(bad & (t._first_bad_step < 0), self.global_step, t._first_bad_step))

    def step(self) -> StepResult:
        """One training step: eager for the warm-up, then capture once, then replays."""
        t = self.trainer
        t.generator.train()
        t.discriminator.train()
        if self.graph is None and self.eager_steps == 0:
            self.global_step.fill_(t.state.step)
        if self.graph is not None:
            self.graph.replay()
        elif self.eager_steps < WARMUP_STEPS:
            side = torch.cuda.Stream(device=t.device)
            side.wait_stream(torch.cuda.current_stream(t.device))
            with torch.cuda.stream(side):
                self._body()
            torch.cuda.current_stream(t.device).wait_stream(side)
            self.eager_steps += 1
        else:
            self._capture()
            assert self.graph is not None
            self.graph.replay()
        self.loader._pos += 1
        if self.loader._pos >= len(self.loader):
            self.loader._perm = None  # the epoch is complete, as TensorLoader.__iter__ would mark it
        return StepResult(self.out[0], self.out[1], self.out[2], self.out[3])

    def _capture(self) -> None:
        t = self.trainer
        t.g_optimizer.zero_grad(set_to_none=True)
        t.d_optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize(t.device)
        graph = torch.cuda.CUDAGraph()
        # Capture records the kernels without running them: replay() then runs the step.
        t._autocast_cache = False  # autocast's weight cache cannot live across replays
        try:
            with torch.cuda.graph(graph):
                self._body()
        finally:
            t._autocast_cache = True
        self.graph = graph


def graph_step_for(trainer: GANTrainer, data: Any) -> Any:
    """The CUDA-graph step for ``data``, or None for the eager loop (with a warning saying why)."""
    from .data import TensorLoader
    from .graphed import CudaGraphStep

    if not isinstance(data, TensorLoader) or data.device != trainer.device or data.world_size != 1:
        warnings.warn("capture='cuda_graph' needs a TensorLoader whose tensors are on the training device; "
                      "this fit runs the eager step", stacklevel=3)
        return None
    if trainer._graph_step is None or not trainer._graph_step.matches(data):
        trainer._graph_step = CudaGraphStep(trainer, data)
    trainer._graph_step.loader = data
    return trainer._graph_step


def run_graphed_loop(trainer: GANTrainer, graph_step: Any, epochs: int, limit_reached: Callable[[], bool]) -> None:
    """The fit loop of ``GANTrainer._loop`` with the graphed step: the loader's order is gathered on the device."""
    st = trainer.state
    steps_per_epoch = len(graph_step.loader)
    every = trainer.check_finite if not isinstance(trainer.check_finite, bool) else 0
    while st.epoch < epochs and not limit_reached():
        if st.epoch_step >= steps_per_epoch:
            trainer._end_epoch()
            continue
        trainer._epoch_t0, trainer._epoch_step0 = time.perf_counter(), st.step
        if st.epoch_step == 0:
            st.metrics.clear()
            trainer.fire(Event.EPOCH_START)
        graph_step.start_epoch()
        while True:
            trainer.fire(Event.STEP_START)
            trainer.in_step = True
            st.last = graph_step.step()
            st.step += 1
            st.epoch_step += 1
            trainer.in_step = False
            if every and st.step % every == 0:
                trainer.raise_if_nonfinite()
            trainer.fire(Event.STEP_END)
            if limit_reached() or st.epoch_step >= steps_per_epoch:
                break
        if st.epoch_step >= steps_per_epoch:
            trainer._end_epoch()
