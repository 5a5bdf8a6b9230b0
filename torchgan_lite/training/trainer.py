"""GANTrainer: the epoch loop around a training step, with events, signals and checkpoints.

The step itself (n_critic discriminator updates, one generator update) is a
:class:`~torchgan_lite.training.step.GANStep` built once, by :func:`~torchgan_lite.build_step` from the
parts and a :class:`~torchgan_lite.StepConfig`, or handed over built. A bad update is the one
exception type the step's guard raises (:class:`NonFiniteLossError`); the trainer catches it and
lets ``NONFINITE`` handlers drop the step.
The trainer runs one loop over it, fires events, stops cleanly on a first Ctrl-C or
SIGTERM, samples, and composes checkpoints from each part's ``state_dict``
(``docs/architecture.md``).

Per-epoch means are summed on the device and read once at the end of the epoch; a
handler that reads ``state.last`` pays one synchronisation when it does.
"""

from __future__ import annotations

import math
import signal
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchgan_lite.checkpoints import rng
from torchgan_lite.losses.adversarial import GANLoss
from torchgan_lite.training import restore as resume
from torchgan_lite.training.events import Event, EventHandlers, Handler, RemovableHandle
from torchgan_lite.training.factory import StepConfig, build_step
from torchgan_lite.training.signals import finish_step_on_signals
from torchgan_lite.training.state import EpochStats, NonFiniteLossError, StepResult, TrainerState, TrainingInterrupted
from torchgan_lite.training.step import GANStep
from torchgan_lite.training.validation import (
    check_batch,
    check_fit_data,
    check_parts,
    check_registrable,
    check_sample_request,
    example_batch,
    local_rank_device,
    output_range,
    probe,
    range_mismatch,
)
from torchgan_lite.utils import distributed as dist_utils
from torchgan_lite.utils.checks import check_int, describe
from torchgan_lite.utils.runtime import resolve_device

__all__ = ["GANTrainer"]



class GANTrainer:
    """Trains a generator against a discriminator: one loop over a training step, with events.

    Give it the parts (``generator``, ``discriminator``, ``loss`` and optionally optimizers and a
    :class:`~torchgan_lite.StepConfig`), which it hands to :func:`~torchgan_lite.build_step`, or a
    step already built (``step=build_step(...)``, or a :class:`~torchgan_lite.GANStep` subclass of your
    own), which it runs as it is. The step owns everything about one update (loss, optimizers,
    ``n_critic``, regularizers, autocast, augmentation, the non-finite guard); the trainer owns the
    loop, events, signals, sampling and checkpoints.

    Args:
        generator: Maps noise ``(B, latent_dim)`` to samples ``(B, *sample_shape)``
            (conditional, with an int ``num_classes`` attribute: ``G(z, y)``, labels ``(B,)``).
        discriminator: Maps samples to one logit each, ``(B,)`` or ``(B, 1)``.
        loss: An object with ``discriminator_loss(real_logits, fake_logits)`` and
            ``generator_loss(fake_logits)`` (see :mod:`torchgan_lite.losses`).
        step: A :class:`~torchgan_lite.StepConfig` (how the step trains; None: the defaults), or a
            built :class:`~torchgan_lite.GANStep` (then pass no other part).
        g_optimizer, d_optimizer: Over each network's parameters. Default: the recipe's Adam(2e-4).
        latent_dim: Noise size. None: the generator's ``latent_dim`` attribute.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"auto"`` or a ``torch.device``; the models move there.
            With a built step: None (the step's device).
        distributed: None: data-parallel when a process group exists or torchrun's ``WORLD_SIZE`` > 1
            (:mod:`torchgan_lite.utils.distributed`); False: never. With a built step, the step's
            ``rank`` and ``world_size`` are used.

    Seed first (:func:`torchgan_lite.seed_everything`) to fix the weights, the noise and the data order.

    Raises:
        TypeError, ValueError: at construction, for any argument that cannot work, checked with one
            tiny forward pass through both networks.
    """

    def __init__(
        self,
        generator: nn.Module | None = None,
        discriminator: nn.Module | None = None,
        loss: GANLoss | None = None,
        *,
        step: StepConfig | GANStep | None = None,
        g_optimizer: torch.optim.Optimizer | None = None,
        d_optimizer: torch.optim.Optimizer | None = None,
        latent_dim: int | None = None,
        device: torch.device | str | None = "cpu",
        distributed: bool | None = None,
    ) -> None:
        if distributed is not None and not isinstance(distributed, bool):
            raise TypeError(f"distributed must be a bool or None, got {describe(distributed)}")
        if isinstance(step, GANStep):
            given = {"generator": generator, "discriminator": discriminator, "loss": loss,
                     "g_optimizer": g_optimizer, "d_optimizer": d_optimizer, "latent_dim": latent_dim}
            extra = [name for name, value in given.items() if value is not None]
            if extra:
                raise ValueError(f"step is a built GANStep, which holds its parts: do not also pass {', '.join(extra)}")
            if device not in (None, "cpu") and resolve_device(device) != step.device:
                raise ValueError(f"device={device!r} but the step runs on {step.device}")
            gan_step = step
            self.device = step.device
            self.rank, self.world_size = step.rank, step.world_size
        else:
            if step is not None and not isinstance(step, StepConfig):
                raise TypeError(f"step must be a StepConfig, a GANStep or None, got {describe(step)}")
            check_parts(generator, discriminator, loss, latent_dim)
            assert generator is not None and discriminator is not None
            if device is None:
                raise TypeError("device=None means the device of a built step; with the parts, pass 'cpu', 'cuda', "
                                "'cuda:N', 'auto' or a torch.device")
            self.device = resolve_device(local_rank_device(device) if distributed is not False else device)
            self.rank, self.world_size = dist_utils.init_from_env(self.device) if distributed is not False else (0, 1)
            if distributed and self.world_size == 1:
                warnings.warn("distributed=True but no process group is initialised and WORLD_SIZE is not > 1: "
                              "training on one process", stacklevel=2)
            generator, discriminator = generator.to(self.device), discriminator.to(self.device)
            dist_utils.broadcast_module(generator)
            dist_utils.broadcast_module(discriminator)
            gan_step = build_step(generator, discriminator, loss, step, g_optimizer=g_optimizer,
                                  d_optimizer=d_optimizer, latent_dim=latent_dim, device=self.device,
                                  rank=self.rank, world_size=self.world_size)
        #: The training step in use (a :class:`~torchgan_lite.GANStep` or a subclass; :mod:`.factory`).
        self.gan_step: GANStep = gan_step
        self.latent_dim: int = gan_step.latent_dim
        self.num_classes: int | None = gan_step.num_classes
        self.param_dtype = gan_step.param_dtype
        self.sample_shape = probe(gan_step.generator, gan_step.discriminator, gan_step.loss, gan_step.regularizers,
                                  self.latent_dim, self.num_classes, self.device, self.param_dtype)
        self.state = TrainerState()
        #: An averaged copy of the generator (set by :class:`~torchgan_lite.GeneratorEMA`); ``sample`` prefers it.
        self.ema_generator: nn.Module | None = None
        #: The iterable of the running (or last) ``fit``.
        self.data: Iterable[Any] | None = None
        #: True while a step is under way: a checkpoint now would hold half a step.
        self.in_step = False
        self._events: EventHandlers[GANTrainer] = EventHandlers()
        self._terminate = False
        self._signal: int | None = None
        self._skip_requested = False
        self._range_checked = False
        self._epoch_sums = torch.zeros(5, device=self.device)  # (d_loss, g_loss, d_real, d_fake, steps)
        self._one = torch.ones((), device=self.device)
        self._epoch_t0, self._epoch_step0 = time.perf_counter(), 0
        self._pending_loader: dict[str, Any] | None = None
        self._lost_position = False  # resumed mid-epoch from data that could not save its position
        self._registered: dict[str, Any] = {}

    generator = property(lambda self: self.gan_step.generator, doc="The generator being trained (the step's).")
    discriminator = property(lambda self: self.gan_step.discriminator,
                             doc="The discriminator being trained (the step's).")

    # ------------------------------------------------------------------ events

    def add_callback(self, event: Event, fn: Handler[GANTrainer], every: int = 1) -> RemovableHandle:
        """Register ``fn(trainer)`` to run at ``event``; returns a handle whose ``remove()`` unregisters it."""
        return self._events.add(event, fn, every)

    def on(self, event: Event, every: int = 1) -> Callable[[Handler[GANTrainer]], Handler[GANTrainer]]:
        """Decorator form of :meth:`add_callback`: ``@trainer.on(Event.EPOCH_END, every=5)``."""
        return self._events.on(event, every)

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

    def _check_batch(self, batch: object) -> tuple[torch.Tensor, torch.Tensor | None]:
        return check_batch(batch, sample_shape=self.sample_shape, num_classes=self.num_classes, device=self.device,
                           dtype=self.param_dtype)

    def _skip_on_nonfinite(self, err: NonFiniteLossError) -> bool:
        """The step refused a bad update: NONFINITE handlers decide whether to drop the step (True)."""
        if not err.skippable:
            return False
        st = self.state
        st.nonfinite = {"step": st.step + 1, "which": err.which, "loss": err.value, "reason": err.reason}
        self._skip_requested = False
        self.fire(Event.NONFINITE)
        if self._skip_requested:
            return True
        err.args = (f"{err.reason} at step {st.step + 1}; no update was applied. Lower the learning rate, check "
                    "the data, or add a NONFINITE handler that calls trainer.skip_step()",)
        return False

    def noise(self, n: int) -> torch.Tensor:
        """``n`` noise vectors ``(n, latent_dim)`` ~ N(0, I) on the device, from torch's global RNG."""
        return torch.randn(n, self.latent_dim, device=self.device, dtype=self.param_dtype)

    def train_step(self, batch: torch.Tensor | Sequence[torch.Tensor]) -> StepResult:
        """One training step on a batch ``(B, *sample_shape)`` (or ``(images, labels)``); advances ``state.step``."""
        real, labels = self._check_batch(batch)
        if not self._range_checked:  # once per trainer: one host read
            self._range_checked = True
            problem = range_mismatch(real, output_range(self.generator))
            if problem is not None:
                warnings.warn(problem, stacklevel=2)
        st = self.state
        self.in_step = True
        try:
            result = self.gan_step.step(real, labels)
        except NonFiniteLossError as err:
            if not self._skip_on_nonfinite(err):
                raise  # in_step stays True: a half step is not checkpointed until a good state is loaded
            st.skipped_steps += 1
            result = st.last if st.last is not None else StepResult(*(torch.full((), math.nan),) * 4)
        else:
            self._epoch_sums += torch.stack([*result.as_tuple(), self._one]).float()
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
            data: A :class:`~torchgan_lite.TensorLoader` (fast, resumable mid-epoch) or any re-iterable
                of tensors or ``(images, labels)`` tuples, such as a ``DataLoader``.
            epochs: Total epochs, counting those already done (a resumed run stops where one run would).
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
            example = example_batch(data)  # the data is checked even when there is nothing to train
            if example is not None:
                self._check_batch(example)
            warnings.warn(f"nothing to train: the trainer is at epoch {st.epoch}, step {st.step}, which already "
                          f"meets epochs={epochs}, max_steps={max_steps} (totals, not increments)", stacklevel=2)
            return st
        resume.hand_position(data, self._pending_loader, self._lost_position, st.epoch_step)
        self._pending_loader, self._lost_position = None, False
        self.data = data
        self._terminate = False
        st.exception = None
        try:
            self._signal = None
            with finish_step_on_signals(self._on_signal, lambda: st.step, enabled=self.world_size == 1):
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

    def _on_signal(self, signum: int) -> None:
        self._signal = signum
        self._terminate = True

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
            steps_before, exhausted = st.step, True
            for batch in data:
                self.fire(Event.STEP_START)
                self.train_step(batch)
                self.fire(Event.STEP_END)
                if self._limit_reached() or (steps_per_epoch is not None and st.epoch_step >= steps_per_epoch):
                    exhausted = False
                    break
            if st.step == steps_before and not self._limit_reached():
                raise ValueError("data yielded no batches this epoch: an empty dataset, or an iterator that "
                                 "cannot be iterated twice (pass a re-iterable such as a TensorLoader)")
            if not exhausted and (steps_per_epoch is None or st.epoch_step < steps_per_epoch):
                return  # stopped inside the epoch: it stays open
        sums = dist_utils.all_reduce_mean(self._epoch_sums, self.world_size).tolist()  # the epoch's one host read
        seconds = time.perf_counter() - self._epoch_t0
        n = max(sums[4], 1.0)
        st.epoch += 1
        d_loss, g_loss, d_real, d_fake = (v / n for v in sums[:4])
        st.history.append(EpochStats(st.epoch, st.step, d_loss, g_loss, d_real, d_fake, seconds=seconds,
                                     steps_per_s=(st.step - self._epoch_step0) / seconds if seconds > 0 else math.nan))
        self._epoch_sums.zero_()
        st.epoch_step = 0
        self.gan_step.guard.poll(st.step)
        self.fire(Event.EPOCH_END)

    def sample(self, n: int, z: torch.Tensor | None = None, labels: torch.Tensor | None = None,
               use_ema: bool = True) -> torch.Tensor:
        """``n`` samples ``(n, *sample_shape)`` without gradients, in eval mode (the mode is restored after).

        Args:
            n: How many samples.
            z: Optional noise ``(n, latent_dim)`` (a fixed bank, or :func:`~torchgan_lite.truncated_noise`).
            labels: Conditional generators: int64 classes ``(n,)``; None draws them uniformly.
            use_ema: Sample from ``ema_generator`` when one is attached.
        """
        z, labels = check_sample_request(n, z, labels, latent_dim=self.latent_dim, num_classes=self.num_classes,
                                         device=self.device, dtype=self.param_dtype)
        if z is None:
            z = self.noise(n)
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
        self._registered[name] = check_registrable(name, obj)

    def state_dict(self) -> dict[str, Any]:
        """The whole training state, composed from each part's own (``docs/architecture.md``); not mid-step."""
        from torchgan_lite.nets.registry import module_config

        if self.in_step:
            raise RuntimeError(f"cannot checkpoint in the middle of step {self.state.step + 1}: some of its updates "
                               "have happened, so it could not resume exactly. Save at a step boundary (STEP_END, "
                               "EPOCH_END), or load the last good checkpoint first")
        st, data = self.state, self.data
        loader = self._pending_loader if self._pending_loader is not None else \
            data.state_dict() if callable(getattr(data, "state_dict", None)) else None  # type: ignore[union-attr]
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
            ckpt: What :meth:`state_dict` returned.
            source: Names the checkpoint in error messages.
            data: The next ``fit``'s data, to check and restore its position now (else at that ``fit``).
            hyperparameters: Optimizer hyper-parameters (lr, betas...) that differ from the saved ones:
                ``"check"`` refuses, ``"saved"`` continues with those, ``"current"`` keeps this trainer's.
            strict: Refuse another loss, ``n_critic``, ``amp``, regularizers, augment or batch size (False: warn).
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
        from torchgan_lite.checkpoints.format import save_checkpoint

        self.gan_step.guard.poll(self.state.step, force=True)
        state = self.state_dict()
        resume.refuse_nonfinite(state, path, self.state.step)
        if not self.is_main_process:
            return Path(path)
        written = save_checkpoint(state, path, keep_last=keep_last)
        self.fire(Event.CHECKPOINT_SAVED)
        return written

    def load_checkpoint(self, path: str | Path, data: Any = None, hyperparameters: str = "check",
                        strict: bool = True, allow_nonfinite: bool = False) -> None:
        """Restore a checkpoint file into this trainer (see :meth:`load_state_dict`; all or nothing).

        A file whose weights, optimizer or registered state hold a NaN or infinity is refused, naming
        the tensor, unless ``allow_nonfinite=True`` (then loaded with a warning).
        """
        from torchgan_lite.checkpoints.format import load_checkpoint

        ckpt = load_checkpoint(path, allow_nonfinite=allow_nonfinite)
        self.load_state_dict(ckpt, str(path), data, hyperparameters, strict)
