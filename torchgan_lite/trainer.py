"""GANTrainer: the epoch loop around a training step, with events, signals and checkpoints.

The step itself (n_critic discriminator updates, one generator update) is a
:class:`~torchgan_lite.step.GANStep`, chosen once at construction: the eager step,
the CUDA-graph step (``capture="cuda_graph"``) or the compiled step (``compile=True``).
The trainer runs one loop over whichever it is, fires events, turns a first Ctrl-C or
SIGTERM into a clean stop at a step boundary, samples, and composes checkpoints from
the ``state_dict`` of each part that owns state (see ``docs/architecture.md``).

Per-epoch means are summed on the device and read once at the end of the epoch; a
handler that reads ``state.last`` pays one synchronisation when it does.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import distributed as dist_utils
from . import resume, rng
from .events import Event, EventHandlers, Handler, RemovableHandle
from .guard import NonFinitePolicy, SkipStep
from .losses import GANLoss, Regularizer
from .state import EpochStats, NonFiniteLossError, StepResult, TrainerState, TrainingInterrupted
from .step import GANStep
from .utils import check_int, resolve_device
from .validation import check_batch, check_fit_data, check_labels, check_trainer_arguments, local_rank_device, probe

__all__ = ["EpochStats", "GANTrainer", "NonFiniteLossError", "StepResult", "TrainerState", "TrainingInterrupted"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def default_adam(params: Iterable[nn.Parameter], capturable: bool = False) -> torch.optim.Adam:
    """The recipe's ``Adam(lr=2e-4)`` with PyTorch's default betas, as one fused kernel per group.

    ``capturable``: the step count lives on the device, so a CUDA graph can replay it.
    """
    return torch.optim.Adam(params, lr=2e-4, fused=True, capturable=capturable)


class GANTrainer:
    """Trains a generator against a discriminator with a value-only loss object.

    Args:
        generator: Maps noise ``(B, latent_dim)`` to samples ``(B, *sample_shape)``
            (conditional, with an int ``num_classes`` attribute: ``G(z, y)``, labels ``(B,)``).
        discriminator: Maps samples to one logit each, ``(B,)`` or ``(B, 1)``.
        loss: An object with ``discriminator_loss(real_logits, fake_logits)`` and
            ``generator_loss(fake_logits)`` (see :mod:`torchgan_lite.losses`).
        g_optimizer, d_optimizer: Over each network's parameters. Default: the recipe's Adam(2e-4).
        latent_dim: Noise size. None: the generator's ``latent_dim`` attribute.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"auto"`` or a ``torch.device``; the models move there.
        n_critic: Discriminator updates per generator update (5 for WGAN-GP).
        regularizers: Penalties added to the discriminator loss inside its one backward
            (``reg(D, real, fake)``, or ``reg(real_logits, fake_logits)`` with ``uses_logits = True``).
        amp: None (float32, the recipe's numerics) or ``"bf16"`` (bfloat16 autocast of the forwards).
        augment: ``x -> x`` applied to every discriminator input (:mod:`torchgan_lite.augment`), or None.
        nonfinite: ``"auto"`` (check every update on a CPU, every 100 steps on an accelerator),
            an int (0: off, 1: every update, N: every N steps) or a
            :class:`~torchgan_lite.guard.NonFinitePolicy`. A bad update raises
            :class:`NonFiniteLossError` before it is applied (``every=1``: after ``Event.NONFINITE``,
            whose handler may call :meth:`skip_step`).
        distributed: None: data-parallel when a process group exists or torchrun's ``WORLD_SIZE`` > 1
            (:mod:`torchgan_lite.distributed`); False: never.
        capture: None or ``"cuda_graph"``: the step recorded once and replayed
            (:mod:`torchgan_lite.graphed`); where that cannot work the eager step runs, with a warning.
        compile: The step through ``torch.compile`` (:mod:`torchgan_lite.compiled`).
        step_class: A :class:`~torchgan_lite.step.GANStep` subclass to run instead of the one
            ``capture``/``compile`` choose (e.g. :class:`~torchgan_lite.step.FusedDiscriminatorStep`,
            or your own); it is built with the same arguments.

    Seed first (:func:`torchgan_lite.seed_everything`) to fix the weights, the noise and the data order.

    Raises:
        TypeError, ValueError: at construction, for any argument that cannot work, checked with one
            tiny forward pass through both networks.
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
        amp: str | None = None,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        nonfinite: NonFinitePolicy | int | str = "auto",
        distributed: bool | None = None,
        capture: str | None = None,
        compile: bool = False,
        step_class: type[GANStep] | None = None,
    ) -> None:
        latent_dim, num_classes = check_trainer_arguments(
            generator, discriminator, loss, latent_dim=latent_dim, n_critic=n_critic, regularizers=regularizers,
            amp=amp, augment=augment, distributed=distributed, capture=capture, compile=compile)
        self.device = resolve_device(local_rank_device(device) if distributed is not False else device)
        self.rank, self.world_size = dist_utils.init_from_env(self.device) if distributed is not False else (0, 1)
        if distributed and self.world_size == 1:
            warnings.warn("distributed=True but no process group is initialised and WORLD_SIZE is not > 1: "
                          "training on one process", stacklevel=2)
        generator, discriminator = generator.to(self.device), discriminator.to(self.device)
        dist_utils.broadcast_module(generator)
        dist_utils.broadcast_module(discriminator)
        self.latent_dim: int = latent_dim
        self.num_classes: int | None = num_classes
        self.param_dtype = next(iter(generator.parameters())).dtype
        self.sample_shape = probe(generator, discriminator, loss, regularizers, latent_dim, num_classes,
                                  self.device, self.param_dtype)
        self.nonfinite = NonFinitePolicy.parse(nonfinite, self.device)
        capturable = capture is not None and self.device.type == "cuda"
        w = self.world_size
        kwargs: dict[str, Any] = dict(
            latent_dim=latent_dim, num_classes=num_classes, n_critic=n_critic, regularizers=regularizers, amp=amp,
            augment=augment, rank=self.rank, world_size=w,
            sync=dist_utils.AllReduceSync(w) if w > 1 else None,
            guard=self.nonfinite.make_guard(
                self.device, self._on_nonfinite,
                agree_ok=(lambda t: dist_utils.all_reduce_min(t.float(), w) > 0) if w > 1 else None,
                agree_max=(lambda t: dist_utils.all_reduce_max(t, w)) if w > 1 else None))
        g_opt = g_optimizer if g_optimizer is not None else default_adam(generator.parameters(), capturable)
        d_opt = d_optimizer if d_optimizer is not None else default_adam(discriminator.parameters(), capturable)
        from .validation import check_optimizer

        check_optimizer("g_optimizer", g_opt, generator, "generator")
        check_optimizer("d_optimizer", d_opt, discriminator, "discriminator")
        step_cls: type[GANStep] = GANStep
        if capture == "cuda_graph":
            from .graphed import CudaGraphStep, capture_unsupported_reason

            reason = capture_unsupported_reason(self.device, regularizers, w, self.nonfinite, g_opt, d_opt)
            if reason is None:
                step_cls = CudaGraphStep
            else:
                warnings.warn(f"capture='cuda_graph' is not available, so the eager step runs: {reason}",
                              stacklevel=2)
        if compile:
            from .compiled import CompiledGANStep

            step_cls = CompiledGANStep
        if step_class is not None:
            if not (isinstance(step_class, type) and issubclass(step_class, GANStep)):
                raise TypeError(f"step_class must be a GANStep subclass, got {step_class!r}")
            step_cls = step_class
        #: The training step in use (a :class:`~torchgan_lite.step.GANStep` or a subclass).
        self.gan_step: GANStep = step_cls(generator, discriminator, loss, g_opt, d_opt, **kwargs)
        self.state = TrainerState()
        #: An averaged copy of the generator (set by ``torchgan_lite.ema.GeneratorEMA``); ``sample`` prefers it.
        self.ema_generator: nn.Module | None = None
        #: The iterable of the running (or last) ``fit``.
        self.data: Iterable[Any] | None = None
        #: True while a step is under way: a checkpoint now would hold half a step.
        self.in_step = False
        self._events = EventHandlers()
        self._terminate = False
        self._signal: int | None = None
        self._skip_requested = False
        self._epoch_sums = torch.zeros(5, device=self.device)  # (d_loss, g_loss, d_real, d_fake, steps)
        self._one = torch.ones((), device=self.device)
        self._epoch_t0, self._epoch_step0 = time.perf_counter(), 0
        self._pending_loader: dict[str, Any] | None = None
        self._lost_position = False  # resumed mid-epoch from data that could not save its position
        self._registered: dict[str, Any] = {}

    # The step's parts, where users have always found them.
    generator = property(lambda self: self.gan_step.generator, doc="The generator being trained.")
    discriminator = property(lambda self: self.gan_step.discriminator, doc="The discriminator being trained.")
    loss = property(lambda self: self.gan_step.loss, doc="The loss object.")
    g_optimizer = property(lambda self: self.gan_step.g_optimizer, doc="The generator's optimizer.")
    d_optimizer = property(lambda self: self.gan_step.d_optimizer, doc="The discriminator's optimizer.")
    n_critic = property(lambda self: self.gan_step.n_critic, doc="Discriminator updates per step.")
    regularizers = property(lambda self: self.gan_step.regularizers, doc="The discriminator's penalties.")
    amp = property(lambda self: self.gan_step.amp, doc="None or 'bf16'.")

    # ------------------------------------------------------------------ events

    def add_callback(self, event: Event, fn: Handler, every: int = 1) -> RemovableHandle:
        """Register ``fn(trainer)`` to run at ``event``; returns a handle whose ``remove()`` unregisters it."""
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
        st = self.state
        counts = {Event.STEP_START: st.step + 1, Event.STEP_END: st.step, Event.EPOCH_START: st.epoch + 1}
        self._events.fire(event, self, counts.get(event, st.epoch))

    def terminate(self) -> None:
        """Ask ``fit`` to stop after the current step (the epoch is left incomplete)."""
        self._terminate = True

    @property
    def should_terminate(self) -> bool:
        """Whether :meth:`terminate` was called (or a signal arrived) during the running ``fit``."""
        return self._terminate

    def skip_step(self) -> None:
        """From a NONFINITE handler: drop the current step (no update) instead of raising."""
        self._skip_requested = True

    @property
    def is_main_process(self) -> bool:
        """True on rank 0 (and on a single process): the one that writes files and prints."""
        return self.rank == 0

    def _on_nonfinite(self, which: str, value: float, reason: str) -> None:
        self.state.nonfinite = {"step": self.state.step + 1, "which": which, "loss": value, "reason": reason}
        self._skip_requested = False
        self.fire(Event.NONFINITE)
        if not self._skip_requested:
            raise NonFiniteLossError(f"{reason} at step {self.state.step + 1}; no update was applied. Lower the "
                                     "learning rate, check the data, or add a NONFINITE handler that calls "
                                     "trainer.skip_step()")

    # ------------------------------------------------------------------ the step and the loop

    def noise(self, n: int) -> torch.Tensor:
        """``n`` noise vectors ``(n, latent_dim)`` ~ N(0, I) on the device, from torch's global RNG."""
        return torch.randn(n, self.latent_dim, device=self.device, dtype=self.param_dtype)

    def train_step(self, batch: torch.Tensor | Sequence[torch.Tensor]) -> StepResult:
        """One training step on a batch ``(B, *sample_shape)`` (or ``(images, labels)``); advances ``state.step``."""
        real, labels = check_batch(self, batch)
        st = self.state
        self.in_step = True
        try:
            result = self.gan_step.step(real, labels)
        except SkipStep:
            st.skipped_steps += 1
            result = st.last if st.last is not None else StepResult(*(torch.full((), math.nan),) * 4)
        else:
            self._epoch_sums += torch.stack([result.d_loss, result.g_loss, result.d_real, result.d_fake,
                                             self._one]).float()
            st.last = result
        st.nonfinite = None
        st.step += 1
        st.epoch_step += 1
        self.in_step = False
        self.gan_step.guard.poll(st.step)
        return result

    def fit(self, data: Iterable[Any], epochs: int = 1, max_steps: int | None = None) -> TrainerState:
        """Train until ``state.epoch == epochs`` or ``state.step == max_steps`` (both totals).

        Args:
            data: Batches: a :class:`~torchgan_lite.data.TensorLoader` (fast, resumable mid-epoch) or any
                re-iterable of tensors or ``(images, labels)`` tuples, such as a ``DataLoader``.
            epochs: Total epochs, counting those already done (a resumed run stops where an
                uninterrupted one would).
            max_steps: Total steps cap, or None.

        Raises:
            TrainingInterrupted: after a first Ctrl-C or SIGTERM, at the next step boundary.
        """
        check_int("epochs", epochs, 1)
        if max_steps is not None:
            check_int("max_steps", max_steps, 1)
        steps_per_epoch = check_fit_data(data, self.world_size)
        st = self.state
        st.max_epochs, st.max_steps = epochs, max_steps
        if st.epoch >= epochs or (max_steps is not None and st.step >= max_steps):
            warnings.warn(f"nothing to train: the trainer is at epoch {st.epoch}, step {st.step}, which already "
                          f"meets epochs={epochs}, max_steps={max_steps} (totals, not increments)", stacklevel=2)
            return st
        self._hand_position_to(data)
        self.data = data
        self._terminate = False
        st.exception = None
        try:
            with self._signals_finish_the_step():
                self.fire(Event.FIT_START)
                while st.epoch < epochs and not self._limit_reached():
                    self._run_epoch(data, steps_per_epoch)
            if self._signal is not None:
                name = signal.Signals(self._signal).name
                raise TrainingInterrupted(f"{name} received: stopped after step {st.step}", self._signal, st.step)
            self.gan_step.guard.poll(st.step, force=True)
            self.fire(Event.FIT_END)
        except BaseException as err:
            st.exception = err
            self.fire(Event.EXCEPTION)
            raise
        return st

    def _limit_reached(self) -> bool:
        st = self.state
        return self._terminate or (st.max_steps is not None and st.step >= st.max_steps)

    def _run_epoch(self, data: Iterable[Any], steps_per_epoch: int | None) -> None:
        st = self.state
        if steps_per_epoch is None or st.epoch_step < steps_per_epoch:  # else: saved at the epoch's last step
            self._epoch_t0, self._epoch_step0 = time.perf_counter(), st.step
            if st.epoch_step == 0:  # not when continuing an interrupted epoch
                st.metrics.clear()
                self.fire(Event.EPOCH_START)
            steps_before = st.step
            for batch in data:
                self.fire(Event.STEP_START)
                self.train_step(batch)
                self.fire(Event.STEP_END)
                if self._limit_reached() or (steps_per_epoch is not None and st.epoch_step >= steps_per_epoch):
                    break
            if st.step == steps_before and not self._limit_reached():
                raise ValueError("data yielded no batches this epoch: an empty dataset, or an iterator that "
                                 "cannot be iterated twice (pass a re-iterable such as a TensorLoader)")
            if self._limit_reached() and (steps_per_epoch is None or st.epoch_step < steps_per_epoch):
                return  # stopped inside the epoch: it stays open
        sums = dist_utils.all_reduce_mean(self._epoch_sums, self.world_size).tolist()  # the epoch's one host read
        seconds = time.perf_counter() - self._epoch_t0
        n = max(sums[4], 1.0)
        st.epoch += 1
        st.history.append(EpochStats(st.epoch, st.step, *(v / n for v in sums[:4]), seconds=seconds,
                                     steps_per_s=(st.step - self._epoch_step0) / seconds if seconds > 0 else math.nan))
        self._epoch_sums.zero_()
        st.epoch_step = 0
        self.gan_step.guard.poll(st.step)
        self.fire(Event.EPOCH_END)

    @contextlib.contextmanager
    def _signals_finish_the_step(self) -> Iterator[None]:
        """A first SIGINT or SIGTERM ends ``fit`` after the current step; a second one interrupts at once."""
        self._signal = None
        if self.world_size > 1 or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.getsignal(s) for s in _SIGNALS}

        def handler(signum: int, frame: Any) -> None:
            if self._signal is not None:
                raise TrainingInterrupted(f"{signal.Signals(signum).name} received twice: stopped inside step "
                                          f"{self.state.step + 1}", signum, self.state.step)
            self._signal = signum
            self._terminate = True

        for s in _SIGNALS:
            signal.signal(s, handler)
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    # ------------------------------------------------------------------ sampling

    def sample(self, n: int, z: torch.Tensor | None = None, labels: torch.Tensor | None = None,
               use_ema: bool = True) -> torch.Tensor:
        """``n`` samples ``(n, *sample_shape)`` without gradients, in eval mode (the mode is restored after).

        Args:
            n: How many samples.
            z: Optional noise ``(n, latent_dim)`` (a fixed bank, or :func:`torchgan_lite.noise.truncated_noise`).
            labels: Conditional generators: int64 classes ``(n,)``; None draws them uniformly.
            use_ema: Sample from ``ema_generator`` when one is attached.
        """
        check_int("n", n, 1)
        if z is None:
            z = self.noise(n)
        elif not isinstance(z, torch.Tensor):
            raise TypeError(f"z must be a torch.Tensor or None, got {type(z).__name__}")
        elif tuple(z.shape) != (n, self.latent_dim):
            raise ValueError(f"z must have shape (n, latent_dim) = ({n}, {self.latent_dim}), got {tuple(z.shape)}")
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
        """Include ``obj.state_dict()`` in checkpoints under ``name`` (an EMA, a callback...)."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty str, got {name!r}")
        if not (callable(getattr(obj, "state_dict", None)) and callable(getattr(obj, "load_state_dict", None))):
            raise TypeError(f"{name}: the object must have state_dict() and load_state_dict(), "
                            f"got {type(obj).__name__}")
        self._registered[name] = obj

    def state_dict(self) -> dict[str, Any]:
        """The whole training state, composed from the state of each part (``docs/architecture.md``).

        Raises:
            RuntimeError: in the middle of a step (no checkpoint of half a step could resume exactly).
        """
        from .registry import module_config

        if self.in_step:
            raise RuntimeError(f"cannot checkpoint in the middle of step {self.state.step + 1}: some of its "
                               "updates or random draws have happened, so the run could not resume exactly. Save "
                               "at a step boundary (STEP_END, EPOCH_END), or load the last good checkpoint first")
        st, data = self.state, self.data
        if self._pending_loader is not None:
            loader = self._pending_loader
        else:
            loader = data.state_dict() if callable(getattr(data, "state_dict", None)) else None  # type: ignore
        sums = dist_utils.all_reduce_mean(self._epoch_sums, self.world_size)  # collective: every rank calls
        return {
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "models": {"generator": module_config(self.generator), "discriminator": module_config(self.discriminator)},
            "step": self.gan_step.state_dict(),
            "trainer": {**st.state_dict(), "epoch_sums": sums.detach().cpu().clone(), "latent_dim": self.latent_dim,
                        "num_classes": self.num_classes, "sample_shape": list(self.sample_shape),
                        "world_size": self.world_size},
            "loader": loader,
            "extra": {name: obj.state_dict() for name, obj in self._registered.items()},
            "rng": rng.capture_rng_state(),
        }

    def load_state_dict(self, ckpt: dict[str, Any], source: str = "state_dict", data: Any = None,
                        hyperparameters: str = "check", strict: bool = True) -> None:
        """Restore :meth:`state_dict`: every part is checked first, then all are applied, or none.

        Args:
            ckpt: What :meth:`state_dict` returned (a format-1 checkpoint's layout is accepted).
            source: Names the checkpoint in error messages.
            data: The data of the next ``fit``, to restore (and check) its position now; else it is
                handed to the next ``fit``'s data.
            hyperparameters: ``"check"``: refuse optimizer hyper-parameters (lr, betas...) that differ
                from the saved ones; ``"saved"``: continue with the saved ones; ``"current"``: keep this
                trainer's (to change the learning rate on resume).
            strict: Refuse a checkpoint saved with another loss, ``n_critic``, ``amp``, regularizers,
                augmentation or batch size (False: warn instead).
        """
        restored = resume.restore(ckpt, source, gan_step=self.gan_step, state=self.state,
                                  registered=self._registered, data=data, hyperparameters=hyperparameters,
                                  strict=strict, shapes=(self.latent_dim, self.num_classes, self.sample_shape))
        self._epoch_sums = restored.epoch_sums.to(self.device, torch.float32).clone()
        self._pending_loader = restored.pending_loader
        self._lost_position = restored.lost_position
        self.in_step = False

    def save_checkpoint(self, path: str | Path, keep_last: int | None = None) -> Path:
        """Write :meth:`state_dict` atomically to ``path`` (on the main process; every rank must call it).

        Raises:
            NonFiniteLossError: a bad step is pending, or a parameter, buffer or optimizer state holds a
                NaN or infinity (named): a checkpoint is never written from a broken state, and the last
                good file on disk stays the last good one.
        """
        from .checkpoint import save_checkpoint
        from .resume import first_nonfinite

        self.gan_step.guard.poll(self.state.step, force=True)
        state = self.state_dict()
        bad = first_nonfinite(state)
        if bad is not None:
            raise NonFiniteLossError(f"not saving {path}: {bad} holds a NaN or infinity at step {self.state.step}; "
                                     "the previous checkpoint is kept as the last good one")
        if not self.is_main_process:
            return Path(path)
        written = save_checkpoint(state, path, keep_last=keep_last)
        self.fire(Event.CHECKPOINT_SAVED)
        return written

    def load_checkpoint(self, path: str | Path, data: Any = None, hyperparameters: str = "check",
                        strict: bool = True) -> None:
        """Restore a checkpoint file into this trainer (see :meth:`load_state_dict`; all or nothing)."""
        from .checkpoint import load_checkpoint

        self.load_state_dict(load_checkpoint(path), str(path), data, hyperparameters, strict)

    def _hand_position_to(self, data: Any) -> None:
        if self._pending_loader is not None:
            if hasattr(data, "load_state_dict"):
                data.load_state_dict(self._pending_loader)
            else:
                warnings.warn("the checkpoint holds a data-loader position but this data has no load_state_dict(): "
                              "the interrupted epoch restarts from a fresh order", stacklevel=3)
            self._pending_loader = None
        elif self._lost_position:
            warnings.warn(f"the checkpoint was saved {self.state.epoch_step} steps into an epoch from data that "
                          "could not save its position (no state_dict(), e.g. a DataLoader): the rest of that "
                          "epoch is drawn from a fresh order, so the run does not repeat the saved one exactly",
                          stacklevel=3)
        self._lost_position = False

