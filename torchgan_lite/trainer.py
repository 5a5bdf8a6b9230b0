"""GANTrainer: the alternating discriminator/generator loop, with events and checkpoints.

One training step, as in the reference recipe (``shared/seed-recipe.md``):

1. ``n_critic`` times: ``fake = G(z)`` without a graph (the recipe's ``.detach()``),
   ``loss_D = loss.discriminator_loss(D(real), D(fake)) + sum(regularizers)``,
   one backward, one ``d_optimizer.step()``.
2. Fresh noise, ``loss_G = loss.generator_loss(D(G(z)))`` with D's parameters
   frozen (no gradient is computed for them, so D's weights and ``.grad`` are left
   exactly as they were), one backward, one ``g_optimizer.step()``.

The default ("fast") path keeps every value on the device: no ``.item()`` per
step. Per-epoch means are summed on the device and read once at the end of the
epoch; a handler that reads ``state.last`` pays one synchronisation when it does.
``fast=False`` runs the tutorial's literal arithmetic (a graph through G for the
discriminator's fakes, gradients for D's weights in the generator update, a host
read of each loss per step): it is the baseline that benchmarks and the
equivalence test compare against.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from .events import Event, EventHandlers, Handler, RemovableHandle
from .losses import GANLoss, Regularizer
from .utils import resolve_device

__all__ = ["EpochStats", "GANTrainer", "StepResult", "TrainerState"]


@dataclass(frozen=True)
class StepResult:
    """What one :meth:`GANTrainer.train_step` produced.

    All four are detached 0-d tensors on the training device, so returning them
    costs no host synchronisation; ``float(result.d_loss)`` (or :meth:`as_dict`)
    reads them.

    Attributes:
        d_loss: The discriminator loss of the last critic update, regularizers included.
        g_loss: The generator loss.
        d_real: Mean discriminator logit on the real batch (last critic update).
        d_fake: Mean discriminator logit on the fake batch (last critic update).
    """

    d_loss: torch.Tensor
    g_loss: torch.Tensor
    d_real: torch.Tensor
    d_fake: torch.Tensor

    def as_dict(self) -> dict[str, float]:
        """The four values as Python floats (one host synchronisation)."""
        values = torch.stack([self.d_loss, self.g_loss, self.d_real, self.d_fake]).float().tolist()
        return dict(zip(("d_loss", "g_loss", "d_real", "d_fake"), values))


@dataclass
class EpochStats:
    """Means over one completed epoch, recorded in ``TrainerState.history``."""

    epoch: int  # epochs completed, counted from 1
    step: int  # total steps at the end of this epoch
    d_loss: float
    g_loss: float
    d_real: float
    d_fake: float
    seconds: float  # wall time of the epoch in this process (0 if it spanned a resume)
    steps_per_s: float


@dataclass
class TrainerState:
    """Everything the loop knows about its progress; ``trainer.state``.

    Attributes:
        epoch: Epochs completed.
        step: Training steps completed (one step = ``n_critic`` D updates + one G update).
        epoch_step: Steps done in the epoch now running (0 between epochs).
        max_epochs: The ``epochs`` total of the running ``fit``.
        max_steps: The ``max_steps`` total of the running ``fit`` (None: no limit).
        last: The last :class:`StepResult`, or None before the first step.
        history: One :class:`EpochStats` per completed epoch (the per-epoch mean losses).
        metrics: Free-form floats that callbacks record (e.g. evaluation figures).
        exception: The exception that ended ``fit``, while EXCEPTION handlers run.
    """

    epoch: int = 0
    step: int = 0
    epoch_step: int = 0
    max_epochs: int = 0
    max_steps: int | None = None
    last: StepResult | None = None
    history: list[EpochStats] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    exception: BaseException | None = None


def _optimizer_params(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in opt.param_groups for p in group["params"]]


def _default_adam(params: Iterable[nn.Parameter], fast: bool) -> torch.optim.Adam:
    # The recipe: Adam(lr=2e-4), PyTorch's default betas (0.9, 0.999).
    # fast: one fused kernel per parameter group instead of a Python loop over
    # tensors; the same update to float round-off.
    if fast:
        return torch.optim.Adam(params, lr=2e-4, fused=True)
    return torch.optim.Adam(params, lr=2e-4, foreach=False)


class GANTrainer:
    """Trains a generator against a discriminator with a value-only loss object.

    Args:
        generator: Maps noise ``(B, latent_dim)`` to samples ``(B, *sample_shape)``.
        discriminator: Maps samples to one logit each, ``(B,)`` (``(B, 1)`` is accepted).
        loss: Any object with ``discriminator_loss(real_logits, fake_logits)`` and
            ``generator_loss(fake_logits)`` (see :mod:`torchgan_lite.losses`).
        g_optimizer: Optimizer over the generator's parameters. Default: the recipe's
            ``Adam(lr=2e-4)``.
        d_optimizer: Optimizer over the discriminator's parameters. Default likewise.
        latent_dim: Noise size. None: the generator's ``latent_dim`` attribute.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"auto"`` (CUDA when present) or a
            ``torch.device``. The models are moved there.
        n_critic: Discriminator updates per generator update (5 for WGAN-GP).
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
    ) -> None:
        if not isinstance(generator, nn.Module):
            raise TypeError(f"generator must be a torch.nn.Module, got {type(generator).__name__}")
        if not isinstance(discriminator, nn.Module):
            raise TypeError(f"discriminator must be a torch.nn.Module, got {type(discriminator).__name__}")
        if generator is discriminator:
            raise ValueError("generator and discriminator must be two different modules")
        for method in ("discriminator_loss", "generator_loss"):
            if not callable(getattr(loss, method, None)):
                raise TypeError(f"loss must have a callable {method}(); got {type(loss).__name__} "
                                "(see torchgan_lite.losses)")
        if isinstance(n_critic, bool) or not isinstance(n_critic, int):
            raise TypeError(f"n_critic must be an int, got {n_critic!r}")
        if n_critic < 1:
            raise ValueError(f"n_critic must be >= 1, got {n_critic}")
        if isinstance(regularizers, (str, bytes)) or not isinstance(regularizers, Sequence):
            raise TypeError(f"regularizers must be a sequence of callables, got {type(regularizers).__name__}")
        for i, reg in enumerate(regularizers):
            if not callable(reg):
                raise TypeError(f"regularizers[{i}] must be callable as reg(D, real, fake), got {reg!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, got {seed!r}")
        if amp not in (None, "bf16"):
            raise ValueError(f"amp must be None or 'bf16', got {amp!r}")
        if latent_dim is None:
            latent_dim = getattr(generator, "latent_dim", None)
            if latent_dim is None:
                raise ValueError("latent_dim is required: the generator has no latent_dim attribute, "
                                 "so pass GANTrainer(..., latent_dim=N)")
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, int):
            raise TypeError(f"latent_dim must be an int, got {latent_dim!r}")
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")

        self.device = resolve_device(device)
        if seed is not None:
            from .utils import seed_everything

            seed_everything(seed)
        self.generator = generator.to(self.device)
        self.discriminator = discriminator.to(self.device)
        self.loss = loss
        self.latent_dim = latent_dim
        self.n_critic = n_critic
        self.regularizers = tuple(regularizers)
        self.amp = amp
        self.fast = bool(fast)
        self.g_optimizer = g_optimizer if g_optimizer is not None else _default_adam(generator.parameters(), fast)
        self.d_optimizer = d_optimizer if d_optimizer is not None else _default_adam(discriminator.parameters(), fast)
        self._check_optimizer("g_optimizer", self.g_optimizer, generator, "generator")
        self._check_optimizer("d_optimizer", self.d_optimizer, discriminator, "discriminator")

        self.param_dtype = next(generator.parameters()).dtype if any(True for _ in generator.parameters()) \
            else torch.float32
        self.sample_shape = self._probe_shapes()
        self.state = TrainerState()
        self._events = EventHandlers()
        self._terminate = False
        # Per-epoch sums of (d_loss, g_loss, d_real, d_fake) on the device: read once an epoch.
        self._epoch_sums = torch.zeros(4, device=self.device)
        self._epoch_t0 = time.perf_counter()
        self._epoch_step0 = 0
        self._data: Any = None  # the iterable of the running/last fit, for its checkpoint state
        self._pending_loader_state: dict[str, Any] | None = None
        self._extra_state: dict[str, Any] = {}

    # ------------------------------------------------------------------ validation

    @staticmethod
    def _check_optimizer(name: str, opt: object, module: nn.Module, module_name: str) -> None:
        if not isinstance(opt, torch.optim.Optimizer):
            raise TypeError(f"{name} must be a torch.optim.Optimizer, got {type(opt).__name__}")
        owned = {id(p) for p in module.parameters()}
        foreign = [p for p in _optimizer_params(opt) if id(p) not in owned]
        if foreign:
            raise ValueError(f"{name} updates {len(foreign)} tensor(s) that are not parameters of the "
                             f"{module_name}: build it from {module_name}.parameters()")

    def _probe_shapes(self) -> tuple[int, ...]:
        """One tiny no-grad forward pass through G then D, in eval mode, to check they fit."""
        g, d = self.generator, self.discriminator
        g_mode, d_mode = g.training, d.training
        g.eval()
        d.eval()
        try:
            z = torch.zeros(2, self.latent_dim, device=self.device, dtype=self.param_dtype)  # (2, latent_dim)
            with torch.no_grad():
                try:
                    fake = g(z)
                except Exception as err:
                    raise ValueError(f"latent_dim={self.latent_dim}: the generator rejected noise of shape "
                                     f"(2, {self.latent_dim}): {type(err).__name__}: {err}") from err
                if not isinstance(fake, torch.Tensor) or fake.dim() < 2 or fake.shape[0] != 2:
                    raise ValueError(f"generator must return a (B, ...) tensor for noise (2, {self.latent_dim}), "
                                     f"got {getattr(fake, 'shape', type(fake).__name__)}")
                try:
                    logits = d(fake)
                except Exception as err:
                    raise ValueError(f"the discriminator rejected the generator's output of shape "
                                     f"{tuple(fake.shape)}: {type(err).__name__}: {err}") from err
                if not isinstance(logits, torch.Tensor) or tuple(logits.shape) not in ((2,), (2, 1)):
                    raise ValueError("discriminator must return one logit per sample, shape (B,) or (B, 1); for "
                                     f"a batch of 2 it returned {getattr(logits, 'shape', type(logits).__name__)}")
        finally:
            g.train(g_mode)
            d.train(d_mode)
        return tuple(fake.shape[1:])

    def _check_real(self, real: object, name: str = "real") -> torch.Tensor:
        if isinstance(real, (tuple, list)) and real and isinstance(real[0], torch.Tensor):
            real = real[0]  # (images, labels): an unconditional trainer uses the images
        if not isinstance(real, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor batch (or an (images, ...) tuple), "
                            f"got {type(real).__name__}")
        if not real.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor in the generator's range (e.g. [-1, 1]), "
                            f"got dtype {real.dtype}; convert integer images with x.float() / 127.5 - 1")
        if real.dtype != self.param_dtype:
            raise TypeError(f"{name} has dtype {real.dtype} but the models are {self.param_dtype}; "
                            f"convert it with .to({self.param_dtype})")
        if tuple(real.shape[1:]) != self.sample_shape or real.dim() < 2:
            raise ValueError(f"{name} has shape {tuple(real.shape)} but the generator makes samples of shape "
                             f"(B, {', '.join(map(str, self.sample_shape))}): the data and the models must agree")
        if real.shape[0] < 1:
            raise ValueError(f"{name} is an empty batch (0 samples)")
        if real.device != self.device:
            real = real.to(self.device, non_blocking=True)
        return real

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

    # ------------------------------------------------------------------ the step

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def noise(self, n: int) -> torch.Tensor:
        """``n`` noise vectors ``(n, latent_dim)`` ~ N(0, I) on the device, from torch's global RNG."""
        return torch.randn(n, self.latent_dim, device=self.device, dtype=self.param_dtype)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        out = self.discriminator(x)
        return out.reshape(x.shape[0]).float()  # (B,), float32 for the loss even under autocast

    def _discriminator_update(self, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b = real.shape[0]
        z = self.noise(b)  # (B, latent)
        with self._autocast():
            if self.fast:
                with torch.no_grad():
                    fake = self.generator(z)  # (B, *sample): no graph through G
            else:
                fake = self.generator(z).detach()  # the tutorial: a graph built, then thrown away
            real_logits = self._logits(real)  # (B,)
            fake_logits = self._logits(fake)  # (B,)
            d_loss = self.loss.discriminator_loss(real_logits, fake_logits)
            for reg in self.regularizers:
                d_loss = d_loss + reg(self.discriminator, real, fake)
        self.d_optimizer.zero_grad(set_to_none=self.fast)
        d_loss.backward()
        self.d_optimizer.step()
        return d_loss.detach(), real_logits.detach().mean(), fake_logits.detach().mean()

    def _generator_update(self, b: int) -> torch.Tensor:
        z = self.noise(b)  # fresh noise (B, latent)
        frozen: list[nn.Parameter] = []
        if self.fast:
            # No gradient for D's weights: saves their weight-gradient matmuls and
            # leaves D's .grad exactly as the D update left it.
            frozen = [p for p in self.discriminator.parameters() if p.requires_grad]
            for p in frozen:
                p.requires_grad_(False)
        try:
            with self._autocast():
                fake_logits = self._logits(self.generator(z))  # (B,)
                g_loss = self.loss.generator_loss(fake_logits)
            self.g_optimizer.zero_grad(set_to_none=self.fast)
            g_loss.backward()
            self.g_optimizer.step()
        finally:
            for p in frozen:
                p.requires_grad_(True)
        return g_loss.detach()

    def train_step(self, real: torch.Tensor) -> StepResult:
        """One training step on a real batch ``(B, *sample_shape)``; advances ``state.step``.

        ``n_critic`` discriminator updates on this batch (fresh fakes each), then one
        generator update with fresh noise.
        """
        real = self._check_real(real)
        self.generator.train()
        self.discriminator.train()
        for _ in range(self.n_critic):
            d_loss, d_real, d_fake = self._discriminator_update(real)
        g_loss = self._generator_update(real.shape[0])
        result = StepResult(d_loss, g_loss, d_real, d_fake)
        if not self.fast:
            result.as_dict()  # the tutorial reads each loss on the host every step
        self._epoch_sums += torch.stack([d_loss, g_loss, d_real, d_fake]).float()
        self.state.last = result
        self.state.step += 1
        self.state.epoch_step += 1
        return result

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
        if isinstance(epochs, bool) or not isinstance(epochs, int):
            raise TypeError(f"epochs must be an int, got {epochs!r}")
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int)):
            raise TypeError(f"max_steps must be an int or None, got {max_steps!r}")
        if max_steps is not None and max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or None, got {max_steps}")
        if isinstance(data, torch.Tensor) or not isinstance(data, Iterable):
            raise TypeError(f"data must be an iterable of batches (e.g. TensorLoader(tensor)), "
                            f"got {type(data).__name__}")
        steps_per_epoch = len(data) if hasattr(data, "__len__") else None  # type: ignore[arg-type]
        if steps_per_epoch == 0:
            raise ValueError("data is empty: it yields no batches (check batch_size and drop_last)")

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
            self.fire(Event.FIT_START)
            while st.epoch < epochs and not limit_reached():
                if st.epoch_step == 0:
                    self._epoch_t0, self._epoch_step0 = time.perf_counter(), st.step
                    self.fire(Event.EPOCH_START)
                else:  # continuing an epoch interrupted by a resume or an earlier fit
                    self._epoch_t0, self._epoch_step0 = time.perf_counter(), st.step
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
            self.fire(Event.FIT_END)
        except BaseException as err:
            st.exception = err
            self.fire(Event.EXCEPTION)
            raise
        return st

    def _end_epoch(self) -> None:
        st = self.state
        n = max(st.epoch_step, 1)
        means = (self._epoch_sums / n).tolist()  # the one host read of the epoch
        seconds = time.perf_counter() - self._epoch_t0
        steps_here = st.step - self._epoch_step0
        st.epoch += 1
        st.history.append(EpochStats(st.epoch, st.step, *means, seconds=seconds,
                                     steps_per_s=steps_here / seconds if seconds > 0 else math.nan))
        self._epoch_sums.zero_()
        st.epoch_step = 0
        self.fire(Event.EPOCH_END)

    # ------------------------------------------------------------------ sampling

    def sample(self, n: int, z: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` samples ``(n, *sample_shape)`` from the generator, without gradients.

        The generator is put in eval mode and its mode restored afterwards.

        Args:
            n: How many samples.
            z: Optional noise ``(n, latent_dim)`` (e.g. a fixed bank, to compare epochs).
        """
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"n must be an int, got {n!r}")
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if z is None:
            z = self.noise(n)
        else:
            if not isinstance(z, torch.Tensor):
                raise TypeError(f"z must be a torch.Tensor or None, got {type(z).__name__}")
            if tuple(z.shape) != (n, self.latent_dim):
                raise ValueError(f"z must have shape (n, latent_dim) = ({n}, {self.latent_dim}), "
                                 f"got {tuple(z.shape)}")
            z = z.to(self.device, self.param_dtype)
        g = self.generator
        mode = g.training
        g.eval()
        try:
            with torch.no_grad():
                return g(z)
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
        from .checkpoint import capture_rng_state

        st = self.state
        loader = self._data.state_dict() if hasattr(self._data, "state_dict") else self._pending_loader_state
        return {
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "g_optimizer": self.g_optimizer.state_dict(),
            "d_optimizer": self.d_optimizer.state_dict(),
            "regularizers": [r.state_dict() if hasattr(r, "state_dict") else None for r in self.regularizers],
            "trainer": {
                "epoch": st.epoch,
                "step": st.step,
                "epoch_step": st.epoch_step,
                "history": [asdict(h) for h in st.history],
                "metrics": dict(st.metrics),
                "epoch_sums": self._epoch_sums.detach().cpu().clone(),
                "latent_dim": self.latent_dim,
                "sample_shape": list(self.sample_shape),
                "n_critic": self.n_critic,
            },
            "loader": loader,
            "extra": {name: obj.state_dict() for name, obj in self._extra_state.items()},
            "rng": capture_rng_state(),
        }

    def save_checkpoint(self, path: str | Any, keep_last: int | None = None) -> Any:
        """Write :meth:`state_dict` atomically to ``path`` (see :mod:`torchgan_lite.checkpoint`).

        Args:
            path: The file to write (its folder is created).
            keep_last: Also keep at most this many older copies ``path.1``, ``path.2``...

        Returns:
            The path written, as a ``pathlib.Path``.
        """
        from .checkpoint import save_checkpoint

        written = save_checkpoint(self.state_dict(), path, keep_last=keep_last)
        self.fire(Event.CHECKPOINT_SAVED)
        return written

    def load_checkpoint(self, path: str | Any) -> None:
        """Restore a checkpoint written by :meth:`save_checkpoint` into this trainer.

        Everything is checked before anything is changed: a file that is not a
        checkpoint, or whose shapes do not fit these models, raises ``ValueError``
        naming the file and the mismatch, and leaves the trainer as it was. The next
        ``fit`` carries on exactly where the saved run was.
        """
        from .checkpoint import load_checkpoint

        ckpt = load_checkpoint(path)
        self.load_state_dict(ckpt, source=str(path))

    def load_state_dict(self, ckpt: dict[str, Any], source: str = "state_dict") -> None:
        """Restore what :meth:`state_dict` returned (validated first, then applied)."""
        from .checkpoint import check_module_state, restore_rng_state

        for key in ("generator", "discriminator", "g_optimizer", "d_optimizer", "trainer", "rng"):
            if key not in ckpt:
                raise ValueError(f"{source}: not a torchgan_lite checkpoint (no '{key}' entry)")
        check_module_state(source, "generator", self.generator, ckpt["generator"])
        check_module_state(source, "discriminator", self.discriminator, ckpt["discriminator"])
        tr = ckpt["trainer"]
        if tr["latent_dim"] != self.latent_dim:
            raise ValueError(f"{source}: saved with latent_dim={tr['latent_dim']}, this trainer has {self.latent_dim}")
        if tuple(tr["sample_shape"]) != self.sample_shape:
            raise ValueError(f"{source}: saved for samples of shape {tuple(tr['sample_shape'])}, "
                             f"this trainer makes {self.sample_shape}")
        for name, opt in (("g_optimizer", self.g_optimizer), ("d_optimizer", self.d_optimizer)):
            saved_groups = ckpt[name].get("param_groups", [])
            if [len(g["params"]) for g in saved_groups] != [len(g["params"]) for g in opt.param_groups]:
                raise ValueError(f"{source}: {name} state has parameter groups of sizes "
                                 f"{[len(g['params']) for g in saved_groups]}, this trainer's has "
                                 f"{[len(g['params']) for g in opt.param_groups]}")
        missing = [n for n in self._extra_state if n not in ckpt.get("extra", {})]
        if missing:
            raise ValueError(f"{source}: no saved state for registered {missing}")

        self.generator.load_state_dict(ckpt["generator"])
        self.discriminator.load_state_dict(ckpt["discriminator"])
        self.g_optimizer.load_state_dict(ckpt["g_optimizer"])
        self.d_optimizer.load_state_dict(ckpt["d_optimizer"])
        for reg, saved in zip(self.regularizers, ckpt.get("regularizers", [])):
            if saved is not None and hasattr(reg, "load_state_dict"):
                reg.load_state_dict(saved)
        for name, obj in self._extra_state.items():
            obj.load_state_dict(ckpt["extra"][name])
        st = self.state
        st.epoch, st.step, st.epoch_step = int(tr["epoch"]), int(tr["step"]), int(tr["epoch_step"])
        st.history = [EpochStats(**h) for h in tr["history"]]
        st.metrics = dict(tr.get("metrics", {}))
        st.last = None
        self._epoch_sums = tr["epoch_sums"].to(self.device).clone()
        self._pending_loader_state = ckpt.get("loader")
        if self._data is not None and self._pending_loader_state is not None and hasattr(self._data,
                                                                                          "load_state_dict"):
            self._data.load_state_dict(self._pending_loader_state)
            self._pending_loader_state = None
        restore_rng_state(ckpt["rng"])
