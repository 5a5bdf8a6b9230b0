"""GANTrainer: the alternating discriminator/generator loop, with events and checkpoints.

One training step, as in the reference recipe (``shared/seed-recipe.md``):

1. ``n_critic`` times: ``fake = G(z)`` without a graph (the recipe's ``.detach()``),
   ``loss_D = loss.discriminator_loss(D(real), D(fake)) + sum(regularizers)``,
   one backward, one ``d_optimizer.step()``.
2. Fresh noise, ``loss_G = loss.generator_loss(D(G(z)))`` with D's parameters
   frozen (no gradient is computed for them, so D's weights and ``.grad`` are left
   exactly as they were), one backward, one ``g_optimizer.step()``.

The default ("fast") path keeps every value on the device: no ``.item()`` per
step on an accelerator. Per-epoch means are summed on the device and read once at
the end of the epoch; a handler that reads ``state.last`` pays one
synchronisation when it does. ``fast=False`` runs the tutorial's literal
arithmetic (a graph through G for the discriminator's fakes, gradients for D's
weights in the generator update, a host read of each loss per step): it is the
baseline that benchmarks and the equivalence test compare against.

A generator with an int ``num_classes`` attribute is *conditional*: batches are
``(images, labels)``, the trainer calls ``G(z, y)`` and ``D(x, y)``, and draws
uniform labels for the fakes.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import distributed as dist_utils
from .events import Event, EventHandlers, Handler, RemovableHandle
from .graphed import graph_step_for, run_graphed_loop
from .losses import GANLoss, Regularizer
from .state import EpochStats, NonFiniteLossError, StepResult, TrainerState
from .utils import check_int, resolve_device, seed_everything
from .validation import (
    check_batch,
    check_labels,
    check_optimizer,
    check_trainer_arguments,
    local_rank_device,
    probe_shapes,
)

__all__ = ["EpochStats", "GANTrainer", "NonFiniteLossError", "StepResult", "TrainerState"]


class _SkipStep(Exception):
    """Raised inside a step when a NONFINITE handler asked to skip it."""


def _default_adam(params: Iterable[nn.Parameter], fast: bool, capturable: bool = False) -> torch.optim.Adam:
    # The recipe: Adam(lr=2e-4), PyTorch's default betas (0.9, 0.999). fast: one
    # fused kernel per parameter group instead of a Python loop over tensors; the
    # same update up to float round-off. capturable: its step count lives on the
    # device, so a CUDA graph can replay it.
    if fast:
        return torch.optim.Adam(params, lr=2e-4, fused=True, capturable=capturable)
    return torch.optim.Adam(params, lr=2e-4, foreach=False)



class GANTrainer:
    """Trains a generator against a discriminator with a value-only loss object.

    Args:
        generator: Maps noise ``(B, latent_dim)`` to samples ``(B, *sample_shape)``
            (conditional: ``G(z, y)`` with int64 labels ``(B,)``).
        discriminator: Maps samples to one logit each, ``(B,)`` (``(B, 1)`` is accepted).
        loss: Any object with ``discriminator_loss(real_logits, fake_logits)`` and
            ``generator_loss(fake_logits)`` (see :mod:`torchgan_lite.losses`).
        g_optimizer: Optimizer over the generator's parameters. Default: the recipe's
            ``Adam(lr=2e-4)``.
        d_optimizer: Optimizer over the discriminator's parameters. Default likewise.
        latent_dim: Noise size. None: the generator's ``latent_dim`` attribute.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"auto"`` (CUDA when present) or a
            ``torch.device``. The models are moved there.
        n_critic: Discriminator updates per generator update (5 for WGAN-GP). Each
            uses the same real batch and fresh fakes.
        regularizers: Penalties ``reg(D, real, fake) -> scalar`` added to the
            discriminator loss, inside its one backward pass.
        seed: If given, seeds torch (CPU and CUDA), NumPy and Python's ``random`` now,
            which fixes the noise, the dropout masks and a default TensorLoader's order.
            Seed before building the models too (:func:`torchgan_lite.seed_everything`)
            to fix their initial weights.
        amp: None (float32, the recipe's numerics) or ``"bf16"``: bfloat16 autocast for
            the forward passes, on CPU and CUDA. Losses are computed in float32.
        fast: The default path (see the module docstring); ``False`` for the
            tutorial-literal baseline.
        check_finite: ``True``: before every optimizer step, check the loss on the host
            (free on a CPU, one synchronisation per update on a GPU); a NaN or infinite
            loss fires ``Event.NONFINITE``, then raises :class:`NonFiniteLossError`
            unless a handler called :meth:`skip_step`. An int N: record the first bad
            step on the device and check every N steps (no per-step synchronisation;
            raises, cannot skip). ``False``: no check. ``"auto"``: True on CPU, 100 on
            an accelerator.
        fused_d_forward: Score the real and the fake batch in one discriminator call on
            ``cat([real, fake])`` instead of two: one backward instead of two summed
            gradient sets, larger matmuls. The same math for a discriminator that treats
            samples independently (dropout masks are drawn in another order); NOT for one
            with batch statistics (BatchNorm, minibatch-std), hence off by default.
        capture: None (eager) or ``"cuda_graph"``: record the whole step once and replay
            it (see :mod:`torchgan_lite.graphed`); falls back to eager, with a warning
            saying why, where capture cannot work (e.g. on a CPU).
        compile: ``torch.compile`` both networks' forward passes (``nn.Module.compile``);
            the first steps are slow while it compiles.
        distributed: None: data-parallel when a process group is initialised or the
            torchrun environment says ``WORLD_SIZE`` > 1 (see :mod:`torchgan_lite.distributed`);
            False: never.

    Raises:
        TypeError, ValueError: at construction, for any argument that cannot work,
            checked with one tiny forward pass through both networks.
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        loss: GANLoss,
        *,
        g_optimizer: torch.optim.Optimizer | None = None,
        d_optimizer: torch.optim.Optimizer | None = None,
        latent_dim: int | None = None,
        device: torch.device | str = "cpu",
        n_critic: int = 1,
        regularizers: Sequence[Regularizer] = (),
        seed: int | None = None,
        amp: str | None = None,
        fast: bool = True,
        check_finite: bool | int | str = "auto",
        fused_d_forward: bool = False,
        distributed: bool | None = None,
        capture: str | None = None,
        compile: bool = False,
    ) -> None:
        latent_dim, num_classes = check_trainer_arguments(
            generator, discriminator, loss, latent_dim=latent_dim, n_critic=n_critic, regularizers=regularizers,
            seed=seed, amp=amp, fast=fast, check_finite=check_finite, fused_d_forward=fused_d_forward,
            distributed=distributed, capture=capture, compile=compile)
        self.device = resolve_device(local_rank_device(device) if distributed is not False else device)
        if distributed is None or distributed:
            self.rank, self.world_size = dist_utils.init_from_env(self.device)
        else:
            self.rank, self.world_size = 0, 1
        if distributed and self.world_size == 1:
            warnings.warn("distributed=True but no process group is initialised and WORLD_SIZE is not > 1: "
                          "training on one process", stacklevel=2)
        if seed is not None:
            seed_everything(seed)
        self.generator = generator.to(self.device)
        self.discriminator = discriminator.to(self.device)
        dist_utils.broadcast_module(self.generator)
        dist_utils.broadcast_module(self.discriminator)
        self.loss = loss
        self.latent_dim: int = latent_dim
        self.num_classes: int | None = num_classes
        self.n_critic = n_critic
        self.regularizers = tuple(regularizers)
        self.amp = amp
        self.fast = bool(fast)
        self.fused_d_forward = bool(fused_d_forward)
        if self.fused_d_forward:
            norms = [type(m).__name__ for m in discriminator.modules()
                     if isinstance(m, nn.modules.batchnorm._BatchNorm)]
            if norms:
                raise ValueError(f"fused_d_forward=True would mix real and fake batch statistics in the "
                                 f"discriminator's {norms[0]}; leave it False for this discriminator")
        if check_finite == "auto":
            check_finite = True if self.device.type == "cpu" else 100
        self.check_finite: bool | int = check_finite
        for name, module in (("generator", generator), ("discriminator", discriminator)):
            if not any(p.requires_grad for p in module.parameters()):
                raise ValueError(f"{name} has no trainable parameters: there is nothing to train")
        capturable = capture is not None and self.device.type == "cuda"
        self.g_optimizer = g_optimizer if g_optimizer is not None else \
            _default_adam(generator.parameters(), fast, capturable)
        self.d_optimizer = d_optimizer if d_optimizer is not None else \
            _default_adam(discriminator.parameters(), fast, capturable)
        check_optimizer("g_optimizer", self.g_optimizer, generator, "generator")
        check_optimizer("d_optimizer", self.d_optimizer, discriminator, "discriminator")
        if compile:
            self.generator.compile()
            self.discriminator.compile()
        first = next(iter(generator.parameters()), None)
        self.param_dtype = first.dtype if first is not None else torch.float32
        self.sample_shape = probe_shapes(self)

        self.state = TrainerState()
        #: An averaged copy of the generator (set by ``torchgan_lite.ema.GeneratorEMA``); ``sample`` prefers it.
        self.ema_generator: nn.Module | None = None
        self._events = EventHandlers()
        self._terminate = False
        self._interrupted = False
        self._skip_requested = False
        #: True while a step is under way (between its first update and its bookkeeping).
        self.in_step = False
        # Per-epoch sums of (d_loss, g_loss, d_real, d_fake, steps counted) on the device: read once an epoch.
        self._epoch_sums = torch.zeros(5, device=self.device)
        self._one = torch.ones((), device=self.device)  # counts steps in the sums; made once, not per step
        self._first_bad_step = torch.full((), -1, dtype=torch.int64, device=self.device)
        self._epoch_t0 = time.perf_counter()
        self._epoch_step0 = 0
        self._autocast_cache = True
        self.capture = capture
        self._graph_step: Any = None  # a graphed.CudaGraphStep once captured
        if capture is not None:
            from .graphed import capture_unsupported_reason

            reason = capture_unsupported_reason(self)
            if reason is not None:
                warnings.warn(f"capture={capture!r} is not available, so the eager step runs: {reason}",
                              stacklevel=2)
                self.capture = None
        self._data: Any = None  # the iterable of the running/last fit, for its checkpoint state
        self._pending_loader_state: dict[str, Any] | None = None
        self._extra_state: dict[str, Any] = {}

    # ------------------------------------------------------------------ events

    def add_callback(self, event: Event, fn: Handler, every: int = 1) -> RemovableHandle:
        """Register ``fn(trainer)`` to run at ``event`` (see :mod:`torchgan_lite.events`).

        Returns:
            A handle whose ``remove()`` unregisters the handler.
        """
        return self._events.add(event, fn, every)

    def on(self, event: Event, every: int = 1) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`add_callback`: ``@trainer.on(Event.EPOCH_END, every=5)``."""
        if not isinstance(event, Event):
            raise TypeError(f"event must be a torchgan_lite.Event, got {event!r}")

        def decorator(fn: Handler) -> Handler:
            self._events.add(event, fn, every)
            return fn

        return decorator

    def fire(self, event: Event) -> None:
        """Run the handlers of ``event`` now (the trainer calls this; so may a callback)."""
        if event in (Event.STEP_START, Event.STEP_END):
            count = self.state.step + (1 if event is Event.STEP_START else 0)
        elif event is Event.EPOCH_START:
            count = self.state.epoch + 1
        else:
            count = self.state.epoch
        self._events.fire(event, self, count)

    def terminate(self) -> None:
        """Ask ``fit`` to stop after the current step (the epoch is left incomplete)."""
        self._terminate = True

    @property
    def should_terminate(self) -> bool:
        """Whether :meth:`terminate` was called during the running ``fit``."""
        return self._terminate

    def skip_step(self) -> None:
        """From a NONFINITE handler: drop the current step (no update) instead of raising."""
        self._skip_requested = True

    @property
    def is_main_process(self) -> bool:
        """True on rank 0 (and on a single process): the one that writes files and prints."""
        return self.rank == 0

    # ------------------------------------------------------------------ the step

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=self._autocast_cache)

    def noise(self, n: int) -> torch.Tensor:
        """``n`` noise vectors ``(n, latent_dim)`` ~ N(0, I) on the device, from torch's global RNG."""
        return torch.randn(n, self.latent_dim, device=self.device, dtype=self.param_dtype)

    def _step_noise(self, b: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Noise (and fake labels) for this rank: its slice of one global draw, identical on every rank."""
        w, r = self.world_size, self.rank
        z = self.noise(b * w)  # (W*B, latent)
        y = None
        if self.num_classes is not None:
            y = torch.randint(0, self.num_classes, (b * w,), device=self.device)  # (W*B,)
        if w > 1:
            z = z[r * b : (r + 1) * b]
            y = None if y is None else y[r * b : (r + 1) * b]
        return z, y

    def _gen(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self.generator(z) if y is None else self.generator(z, y)

    def _disc(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self.discriminator(x) if y is None else self.discriminator(x, y)

    def _logits(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self._disc(x, y).reshape(x.shape[0]).float()  # (B,), float32 for the loss even under autocast

    def _guard(self, which: str, loss: torch.Tensor) -> None:
        """Per-update finiteness check (``check_finite=True``), before backward and step.

        With several ranks the verdict is agreed by an all-reduce, so a NaN on one
        rank stops (or skips on) every rank, and none is left waiting in a collective.
        """
        if self.check_finite is not True:
            return
        ok = torch.isfinite(loss)
        if self.world_size > 1:
            ok = dist_utils.all_reduce_min(ok.float(), self.world_size) > 0
        if bool(ok):
            return
        value = float(loss.detach())
        self.state.nonfinite = {"step": self.state.step + 1, "which": which, "loss": value}
        self._skip_requested = False
        self.fire(Event.NONFINITE)
        if self._skip_requested:
            raise _SkipStep
        if self.world_size == 1 or not math.isfinite(value):
            what = f"non-finite {which} loss ({value})"
        else:
            what = f"non-finite {which} loss on another of the {self.world_size} ranks (here it was {value})"
        raise NonFiniteLossError(f"{what} at step {self.state.step + 1}; "
                                 "no update was applied. Lower the learning rate, check the data for NaN, or "
                                 "add a NONFINITE handler that calls trainer.skip_step()")

    def _discriminator_update(self, real: torch.Tensor, labels: torch.Tensor | None
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z, fake_labels = self._step_noise(real.shape[0])
        with self._autocast():
            if self.fast:
                with torch.no_grad():
                    fake = self._gen(z, fake_labels)  # (B, *sample): no graph through G
            else:
                fake = self._gen(z, fake_labels).detach()  # the tutorial: a graph built, then thrown away
            fake = fake.to(real.dtype)  # autocast makes it bfloat16; penalties mix it with real (a no-op in fp32)
            if self.fused_d_forward:
                both_labels = None if labels is None else torch.cat([labels, fake_labels])  # type: ignore[list-item]
                both = self._logits(torch.cat([real, fake]), both_labels)  # (2B,)
                real_logits, fake_logits = both[: real.shape[0]], both[real.shape[0] :]
            else:
                real_logits = self._logits(real, labels)  # (B,)
                fake_logits = self._logits(fake, fake_labels)  # (B,)
            d_loss = self.loss.discriminator_loss(real_logits, fake_logits)
            if self.regularizers:
                d_fn = self.discriminator if labels is None else _Conditioned(self.discriminator, labels)
                for reg in self.regularizers:
                    d_loss = d_loss + reg(d_fn, real, fake)  # type: ignore[arg-type]
        self._guard("discriminator", d_loss)
        self.d_optimizer.zero_grad(set_to_none=self.fast)
        d_loss.backward()
        if self.world_size > 1:
            dist_utils.all_reduce_gradients(list(self.discriminator.parameters()), self.world_size)
        self.d_optimizer.step()
        return d_loss.detach(), real_logits.detach().mean(), fake_logits.detach().mean()

    def _generator_update(self, b: int) -> torch.Tensor:
        z, fake_labels = self._step_noise(b)  # fresh noise (B, latent)
        frozen: list[nn.Parameter] = []
        if self.fast:
            # No gradient for D's weights: saves their weight-gradient matmuls and
            # leaves D's .grad exactly as the D update left it.
            frozen = [p for p in self.discriminator.parameters() if p.requires_grad]
            for p in frozen:
                p.requires_grad_(False)
        try:
            with self._autocast():
                fake_logits = self._logits(self._gen(z, fake_labels), fake_labels)  # (B,)
                g_loss = self.loss.generator_loss(fake_logits)
            self._guard("generator", g_loss)
            self.g_optimizer.zero_grad(set_to_none=self.fast)
            g_loss.backward()
            if self.world_size > 1:
                dist_utils.all_reduce_gradients(list(self.generator.parameters()), self.world_size)
            self.g_optimizer.step()
        finally:
            for p in frozen:
                p.requires_grad_(True)
        return g_loss.detach()

    def train_step(self, batch: torch.Tensor | Sequence[torch.Tensor]) -> StepResult:
        """One training step on a real batch ``(B, *sample_shape)`` (or ``(images, labels)``).

        ``n_critic`` discriminator updates on this batch (fresh fakes each), then one
        generator update with fresh noise. Advances ``state.step``.
        """
        real, labels = check_batch(self, batch)
        self.generator.train()
        self.discriminator.train()
        st = self.state
        self.in_step = True  # until the step is complete: a checkpoint now would hold half a step
        try:
            for _ in range(self.n_critic):
                d_loss, d_real, d_fake = self._discriminator_update(real, labels)
            g_loss = self._generator_update(real.shape[0])
        except _SkipStep:
            st.skipped_steps += 1
            st.step += 1
            st.epoch_step += 1
            st.nonfinite = None
            self.in_step = False
            return st.last if st.last is not None else StepResult(*(torch.full((), math.nan),) * 4)
        result = StepResult(d_loss, g_loss, d_real, d_fake)
        if not self.fast:
            result.as_dict()  # the tutorial reads each loss on the host every step
        self._epoch_sums += torch.stack([d_loss, g_loss, d_real, d_fake, self._one]).float()
        st.last = result
        st.step += 1
        st.epoch_step += 1
        self.in_step = False
        if isinstance(self.check_finite, int) and not isinstance(self.check_finite, bool):
            bad = ~(torch.isfinite(d_loss) & torch.isfinite(g_loss))
            self._first_bad_step.copy_(torch.where(bad & (self._first_bad_step < 0), st.step, self._first_bad_step))
            if st.step % self.check_finite == 0:
                self.raise_if_nonfinite()
        return result

    def raise_if_nonfinite(self) -> None:
        """With ``check_finite=N``: raise :class:`NonFiniteLossError` if any step so far had a bad loss."""
        first_bad = self._first_bad_step
        if self.world_size > 1:  # every rank must agree, or one raises while the others wait
            first_bad = dist_utils.all_reduce_max(first_bad, self.world_size)
        bad = int(first_bad)
        if bad >= 0:
            raise NonFiniteLossError(f"non-finite loss at step {bad} (found at step {self.state.step}, checked "
                                     f"every {self.check_finite} steps); the weights since then are suspect")

    # ------------------------------------------------------------------ the loop

    def fit(self, data: Iterable[Any], epochs: int = 1, max_steps: int | None = None) -> TrainerState:
        """Train until ``state.epoch == epochs`` or ``state.step == max_steps`` (both totals).

        Args:
            data: Batches of real samples: a :class:`~torchgan_lite.data.TensorLoader`
                (fast, resumable mid-epoch) or any re-iterable of tensors or
                ``(images, labels)`` tuples, such as a ``DataLoader``.
            epochs: Total epochs, counting those already done (a resumed run stops where
                an uninterrupted one would).
            max_steps: Total steps cap, or None.

        Returns:
            ``self.state``.
        """
        check_int("epochs", epochs, 1)
        if max_steps is not None:
            check_int("max_steps", max_steps, 1)
        if isinstance(data, torch.Tensor) or not isinstance(data, Iterable):
            raise TypeError(f"data must be an iterable of batches (e.g. TensorLoader(tensor)), "
                            f"got {type(data).__name__}")
        steps_per_epoch = len(data) if hasattr(data, "__len__") else None  # type: ignore[arg-type]
        if steps_per_epoch == 0:
            raise ValueError("data is empty: it yields no batches (check batch_size and drop_last)")
        data_world = getattr(data, "world_size", None)
        if isinstance(data_world, int) and data_world != self.world_size:
            raise ValueError(f"data shards for world_size={data_world} but the trainer runs on {self.world_size} "
                             "process(es): build the TensorLoader after the process group exists (or after the "
                             "trainer), or pass rank= and world_size= to it")

        st = self.state
        st.max_epochs, st.max_steps = epochs, max_steps
        if st.epoch >= epochs or (max_steps is not None and st.step >= max_steps):
            warnings.warn(f"nothing to train: the trainer is at epoch {st.epoch}, step {st.step}, which already "
                          f"meets epochs={epochs}, max_steps={max_steps} (totals, not increments)", stacklevel=2)
            return st
        if self._pending_loader_state is not None:
            if hasattr(data, "load_state_dict"):
                data.load_state_dict(self._pending_loader_state)  # type: ignore[attr-defined]
            else:
                warnings.warn("the checkpoint holds a data-loader position but this data has no "
                              "load_state_dict(): the interrupted epoch restarts from a fresh order", stacklevel=2)
            self._pending_loader_state = None
        self._data = data
        self._terminate = False
        st.exception = None

        def limit_reached() -> bool:
            return self._terminate or (max_steps is not None and st.step >= max_steps)

        try:
            graph_step = graph_step_for(self, data) if self.capture is not None else None
            with self._ctrl_c_finishes_the_step():
                self.fire(Event.FIT_START)
                if graph_step is not None:
                    run_graphed_loop(self, graph_step, epochs, limit_reached)
                else:
                    self._loop(data, epochs, steps_per_epoch, limit_reached)
            if self._interrupted:  # Ctrl-C, deferred to this step boundary
                raise KeyboardInterrupt(f"interrupted at step {st.step}")
            if isinstance(self.check_finite, int) and not isinstance(self.check_finite, bool):
                self.raise_if_nonfinite()
            self.fire(Event.FIT_END)
        except BaseException as err:
            st.exception = err
            self.fire(Event.EXCEPTION)
            raise
        return st

    @contextlib.contextmanager
    def _ctrl_c_finishes_the_step(self) -> Any:
        """On one process in the main thread: a first Ctrl-C ends ``fit`` after the current step.

        ``fit`` then raises ``KeyboardInterrupt`` at that step boundary, so EXCEPTION
        handlers (e.g. ``ModelCheckpoint``) save a consistent state. A second Ctrl-C
        interrupts at once.
        """
        if self.world_size > 1 or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.getsignal(signal.SIGINT)

        def handler(signum: int, frame: Any) -> None:
            if self._interrupted:
                raise KeyboardInterrupt
            self._interrupted = True
            self._terminate = True

        self._interrupted = False
        signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _loop(self, data: Iterable[Any], epochs: int, steps_per_epoch: int | None,
              limit_reached: Callable[[], bool]) -> None:
        st = self.state
        while st.epoch < epochs and not limit_reached():
            if steps_per_epoch is not None and st.epoch_step >= steps_per_epoch:
                self._end_epoch()  # resumed from a checkpoint saved at the epoch's last step
                continue
            self._epoch_t0, self._epoch_step0 = time.perf_counter(), st.step
            if st.epoch_step == 0:  # not when continuing an epoch interrupted earlier
                st.metrics.clear()  # metrics hold what was measured at the latest epoch end only
                self.fire(Event.EPOCH_START)
            steps_before = st.step
            exhausted = True
            for batch in data:
                self.fire(Event.STEP_START)
                self.train_step(batch)
                self.fire(Event.STEP_END)
                if limit_reached() or (steps_per_epoch is not None and st.epoch_step >= steps_per_epoch):
                    exhausted = False
                    break
            if st.step == steps_before and not limit_reached():
                raise ValueError("data yielded no batches this epoch: an empty dataset, or an iterator "
                                 "that cannot be iterated twice (pass a re-iterable such as a TensorLoader)")
            if exhausted or (steps_per_epoch is not None and st.epoch_step >= steps_per_epoch):
                self._end_epoch()

    def _end_epoch(self) -> None:
        st = self.state
        sums = dist_utils.all_reduce_mean(self._epoch_sums, self.world_size)
        values = sums.tolist()  # the one host read of the epoch
        n = max(values[4], 1.0)
        seconds = time.perf_counter() - self._epoch_t0
        steps_here = st.step - self._epoch_step0
        st.epoch += 1
        st.history.append(EpochStats(st.epoch, st.step, *(v / n for v in values[:4]), seconds=seconds,
                                     steps_per_s=steps_here / seconds if seconds > 0 else math.nan))
        self._epoch_sums.zero_()
        st.epoch_step = 0
        if isinstance(self.check_finite, int) and not isinstance(self.check_finite, bool):
            self.raise_if_nonfinite()
        self.fire(Event.EPOCH_END)

    # ------------------------------------------------------------------ sampling

    def sample(self, n: int, z: torch.Tensor | None = None, labels: torch.Tensor | None = None,
               use_ema: bool = True) -> torch.Tensor:
        """``n`` samples ``(n, *sample_shape)`` from the generator, without gradients.

        The generator is put in eval mode and its mode restored afterwards.

        Args:
            n: How many samples.
            z: Optional noise ``(n, latent_dim)`` (e.g. a fixed bank, to compare epochs).
            labels: Conditional generators: int64 classes ``(n,)``; None draws them uniformly.
            use_ema: Sample from ``ema_generator`` when one is attached.
        """
        check_int("n", n, 1)
        if z is None:
            z = self.noise(n)
        else:
            if not isinstance(z, torch.Tensor):
                raise TypeError(f"z must be a torch.Tensor or None, got {type(z).__name__}")
            if tuple(z.shape) != (n, self.latent_dim):
                raise ValueError(f"z must have shape (n, latent_dim) = ({n}, {self.latent_dim}), "
                                 f"got {tuple(z.shape)}")
            z = z.to(self.device, self.param_dtype)
        if self.num_classes is None:
            if labels is not None:
                raise ValueError("labels were given but the generator is not conditional (no num_classes)")
        elif labels is None:
            labels = torch.randint(0, self.num_classes, (n,), device=self.device)
        else:
            labels = check_labels(self, labels.cpu() if isinstance(labels, torch.Tensor) else labels, n)
        g = self.ema_generator if (use_ema and self.ema_generator is not None) else self.generator
        mode = g.training
        g.eval()
        try:
            with torch.no_grad():
                return g(z) if labels is None else g(z, labels)
        finally:
            g.train(mode)

    # ------------------------------------------------------------------ checkpoints

    def register_state(self, name: str, obj: Any) -> None:
        """Include ``obj.state_dict()`` in checkpoints under ``name`` (an EMA, a callback...).

        ``load_checkpoint`` calls ``obj.load_state_dict`` with what was saved.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty str, got {name!r}")
        if not (callable(getattr(obj, "state_dict", None)) and callable(getattr(obj, "load_state_dict", None))):
            raise TypeError(f"{name}: the object must have state_dict() and load_state_dict(), "
                            f"got {type(obj).__name__}")
        self._extra_state[name] = obj

    def state_dict(self) -> dict[str, Any]:
        """The whole training state: models, optimizers, progress, loader position, RNGs."""
        from .checkpoint import trainer_state_dict

        sd = trainer_state_dict(self)
        if self.world_size > 1:  # the epoch so far, averaged over ranks as the epoch mean will be
            sd["trainer"]["epoch_sums"] = dist_utils.all_reduce_mean(self._epoch_sums, self.world_size).cpu()
        return sd

    def load_state_dict(self, ckpt: dict[str, Any], source: str = "state_dict") -> None:
        """Restore what :meth:`state_dict` returned (everything is validated first, then applied)."""
        from .checkpoint import load_trainer_state

        load_trainer_state(self, ckpt, source)
        self._graph_step = None  # the optimizers' state tensors were replaced: capture again

    def save_checkpoint(self, path: str | Path, keep_last: int | None = None) -> Path:
        """Write :meth:`state_dict` atomically to ``path`` (on the main process only).

        Args:
            path: The file to write (its folder is created).
            keep_last: Also keep at most this many older copies ``path.1``, ``path.2``...

        Returns:
            The path, as a ``pathlib.Path``.

        Raises:
            NonFiniteLossError: with ``check_finite=N``, if a bad step is pending:
                a checkpoint never records weights that a NaN loss has touched.
        """
        from .checkpoint import save_checkpoint

        if isinstance(self.check_finite, int) and not isinstance(self.check_finite, bool):
            self.raise_if_nonfinite()
        state = self.state_dict()  # on every rank: it holds collectives
        if not self.is_main_process:
            return Path(path)
        written = save_checkpoint(state, path, keep_last=keep_last)
        self.fire(Event.CHECKPOINT_SAVED)
        return written

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore a checkpoint written by :meth:`save_checkpoint` into this trainer.

        Everything is checked before anything is changed: a file that is not a
        checkpoint, or whose shapes do not fit these models, raises ``ValueError``
        naming the file and the mismatch, and leaves the trainer as it was. The next
        ``fit`` carries on exactly where the saved run was.
        """
        from .checkpoint import load_checkpoint

        self.load_state_dict(load_checkpoint(path), source=str(path))


class _Conditioned(nn.Module):
    """``x -> D(x, labels)``: lets regularizers call a conditional discriminator with one argument."""

    def __init__(self, discriminator: nn.Module, labels: torch.Tensor) -> None:
        super().__init__()
        self.discriminator = discriminator
        self.labels = labels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.discriminator(x, self.labels)
