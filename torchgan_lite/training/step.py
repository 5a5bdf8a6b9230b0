"""GANStep: one training step of a GAN, as a plain object you can read top to bottom.

One step, as in the reference recipe (``docs/reference-recipe.md``):

1. ``n_critic`` times: fresh noise, ``fake = G(z)`` without a graph (the recipe's
   ``.detach()``, without building the graph it throws away);
   ``loss_D = loss.discriminator_loss(D(real), D(fake)) + regularizers``; one
   ``backward()``; one ``d_optimizer.step()``. A discriminator that declares
   ``independent_samples = True`` (the library's do) and holds no per-call state
   is called once on ``cat([real, fake])`` instead of twice (:func:`scores_in_one_call`):
   the same function, one weight gradient per layer instead of two summed ones.
2. Fresh noise; ``loss_G = loss.generator_loss(D(G(z)))`` with D's parameters frozen
   (no gradient is computed for them, so D's weights and ``.grad`` stay as the D update
   left them); one ``backward()``; one ``g_optimizer.step()``. A loss that sets
   ``needs_real_logits`` (RpGAN) gets ``generator_loss(D(G(z)), D(real))``: only then is the
   real batch scored again here (no graph: it is data and D is frozen).

Everything stays on the device: no host read in a step (a :class:`~torchgan_lite.training.guard.HostGuard`
reads its verdicts, free on a CPU). What varies between set-ups is chosen once, at
construction, as small objects with one job each, not as flags on this path:

- ``sync``: the data-parallel gradient average (``NoSync`` on one process,
  :class:`~torchgan_lite.utils.distributed.AllReduceSync` on several);
- ``guard``: the non-finite checks (:mod:`torchgan_lite.training.guard`);
- ``augment``: a differentiable augmentation of every discriminator input, or none.

Other implementations of the same interface: :class:`~torchgan_lite.training.graphed.CudaGraphStep`
(a CUDA graph), :class:`~torchgan_lite.training.compiled.CompiledGANStep` (``torch.compile``) and
:class:`~torchgan_lite.training.fused.FusedDiscriminatorStep` (one D call on real and fake).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import torch
from torch import nn
from torch.nn.utils import parametrize

from torchgan_lite.losses.adversarial import GANLoss
from torchgan_lite.training.guard import Guard, NoGuard
from torchgan_lite.training.state import StepResult

__all__ = ["DUpdate", "GANStep", "GradientSync", "NoSync", "batch_norm_in", "optimizer_config", "per_call_state",
           "scores_in_one_call"]


class GradientSync(Protocol):
    """Averages the ``.grad`` of ``params`` across data-parallel processes."""

    def __call__(self, params: Sequence[nn.Parameter]) -> None: ...


class NoSync:
    """The gradient sync of a single process: nothing to do."""

    def __call__(self, params: Sequence[nn.Parameter]) -> None:
        pass


class DUpdate(NamedTuple):
    """What one discriminator update returns (detached 0-d tensors)."""

    d_loss: torch.Tensor
    d_real: torch.Tensor  # mean logit on the real batch
    d_fake: torch.Tensor  # mean logit on the fake batch
    real_sign: torch.Tensor  # mean of sign(D(real)): ADA's overfitting heuristic


class _Conditioned(nn.Module):
    """``x -> D(x, labels)``: lets regularizers call a conditional discriminator with one argument."""

    def __init__(self, discriminator: nn.Module, labels: torch.Tensor) -> None:
        super().__init__()
        self.discriminator = discriminator
        self.labels = labels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.discriminator(x, self.labels)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def batch_norm_in(module: nn.Module) -> str | None:
    """The first batch normalization of ``module``, as ``"name (BatchNorm2d)"``, or None."""
    for name, m in module.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            return f"{name or type(module).__name__} ({type(m).__name__})"
    return None


def per_call_state(discriminator: nn.Module) -> str | None:
    """The first module of ``discriminator`` whose result depends on how a batch is split into calls, or None.

    Batch normalization (its statistics are the batch's) and spectral normalization (one power
    iteration per call: torch's parametrization, its older ``weight_orig`` hook, the library's
    output spectral norm) make one call on ``cat([real, fake])`` differ from two calls.
    """
    norm = batch_norm_in(discriminator)
    if norm is not None:
        return norm
    for name, m in discriminator.named_modules():
        if parametrize.is_parametrized(m) or hasattr(m, "weight_orig") or hasattr(m, "output_spectral_norm"):
            return f"{name or type(discriminator).__name__} (spectral norm)"
    return None


def scores_in_one_call(discriminator: nn.Module) -> bool:
    """Whether :class:`GANStep` scores real and fake in one call on ``cat([real, fake])``.

    True when the discriminator declares ``independent_samples = True`` (each sample's logit
    depends on that sample alone: no minibatch statistics, no cross-sample layers; the library's
    four discriminators declare it) and :func:`per_call_state` finds nothing (so DCGAN with batch
    norm and ResNet with spectral norm, their defaults, are called twice). One call is then the
    same function as two (its dropout masks are drawn in another order): larger products, one
    weight gradient per layer instead of two summed, no second set of activations. A
    discriminator that does not declare it is called twice, as the recipe writes the step.
    """
    return getattr(discriminator, "independent_samples", False) is True and per_call_state(discriminator) is None


def optimizer_config(opt: torch.optim.Optimizer) -> dict[str, Any]:
    """An optimizer's type and hyper-parameters (per group), as plain values for a checkpoint."""
    groups = []
    for g in opt.param_groups:
        groups.append({k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()
                       if k != "params" and isinstance(v, (int, float, bool, str, tuple, type(None)))})
    return {"type": type(opt).__name__, "param_groups": groups}


class GANStep:
    """The eager training step; see the module docstring.

    Args:
        generator: ``G(z) -> (B, *sample_shape)`` (conditional: ``G(z, y)``).
        discriminator: ``D(x) -> (B,)`` or ``(B, 1)`` logits (conditional: ``D(x, y)``).
        loss: ``discriminator_loss(real_logits, fake_logits)`` and ``generator_loss(fake_logits)``
            (``generator_loss(fake_logits, real_logits)`` if it sets ``needs_real_logits = True``).
        g_optimizer, d_optimizer: Over the generator's and the discriminator's parameters.
        latent_dim: Noise size.
        num_classes: Classes of a conditional pair; None for an unconditional one.
        n_critic: Discriminator updates per generator update.
        regularizers: ``reg(D, real, fake)`` penalties, or ``reg(real_logits, fake_logits)`` for
            classes with ``uses_logits = True``; added inside the D update's one backward.
        amp: None (float32) or ``"bf16"`` (bfloat16 autocast of the forward passes).
        augment: ``x -> x`` applied to every discriminator input (DiffAugment, ADA), or None.
        sync: The gradient sync (:class:`NoSync` on one process).
        guard: The non-finite guard (:class:`~torchgan_lite.training.guard.NoGuard` if None).
        rank, world_size: This process's slice of each global noise draw.
        autocast_cache: autocast's weight-cast cache; a CUDA graph, which replays the
            casts, needs it off.
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        loss: GANLoss,
        g_optimizer: torch.optim.Optimizer,
        d_optimizer: torch.optim.Optimizer,
        *,
        latent_dim: int,
        num_classes: int | None = None,
        n_critic: int = 1,
        regularizers: Sequence[Any] = (),
        amp: str | None = None,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        sync: GradientSync | None = None,
        guard: Guard | None = None,
        rank: int = 0,
        world_size: int = 1,
        autocast_cache: bool = True,
    ) -> None:
        self.generator = generator
        self.discriminator = discriminator
        self.loss = loss
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.n_critic = n_critic
        self.regularizers = tuple(regularizers)
        self.amp = amp
        self.augment = augment
        self.sync: GradientSync = sync if sync is not None else NoSync()
        self.guard: Guard = guard if guard is not None else NoGuard()
        self.rank, self.world_size = rank, world_size
        first = next(iter(generator.parameters()))
        self.device, self.param_dtype = first.device, first.dtype
        self._augment = augment if augment is not None else _identity
        self._input_regs = tuple(r for r in self.regularizers if not getattr(r, "uses_logits", False))
        self._logit_regs = tuple(r for r in self.regularizers if getattr(r, "uses_logits", False))
        self._d_params = [p for p in discriminator.parameters() if p.requires_grad]
        self._g_params = [p for p in generator.parameters() if p.requires_grad]
        # The two forwards an update runs: these methods here, compiled ones in CompiledGANStep.
        self._d_forward = self.discriminator_forward
        self._g_forward: Callable[..., torch.Tensor] = self.generator_forward
        self._needs_real_logits = bool(getattr(loss, "needs_real_logits", False))  # RpGAN: G sees D(real)
        self._score_once = scores_in_one_call(discriminator)  # D(cat([real, fake])): one call, same function
        self._autocast: Callable[[], contextlib.AbstractContextManager[Any]] = (
            contextlib.nullcontext if amp is None else
            lambda: torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=autocast_cache))

    # ------------------------------------------------------------------ pieces

    def noise(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Noise ``(B, latent_dim)`` and fake labels ``(B,)`` (or None): this rank's slice of one global draw."""
        w, r, b = self.world_size, self.rank, batch_size
        z = torch.randn(b * w, self.latent_dim, device=self.device, dtype=self.param_dtype)  # (W*B, latent)
        y = None
        if self.num_classes is not None:
            y = torch.randint(0, self.num_classes, (b * w,), device=self.device)  # (W*B,)
        if w > 1:
            z = z[r * b : (r + 1) * b]
            y = None if y is None else y[r * b : (r + 1) * b]
        return z, y

    def generate(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """``G(z)`` or ``G(z, labels)``."""
        return self.generator(z) if labels is None else self.generator(z, labels)

    def logits(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """``D(x)`` (or ``D(x, labels)``) as ``(B,)`` float32, also under autocast."""
        out = self.discriminator(x) if labels is None else self.discriminator(x, labels)
        return out.reshape(x.shape[0]).float()

    def score(self, real: torch.Tensor, labels: torch.Tensor | None, fake: torch.Tensor,
              fake_labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The discriminator's logits ``(B,)`` on the real and on the fake batch.

        Two calls, or one on ``cat([real, fake])`` where :func:`scores_in_one_call` holds.
        """
        if not self._score_once:
            return self.logits(real, labels), self.logits(fake, fake_labels)
        both_labels = None if labels is None or fake_labels is None else torch.cat([labels, fake_labels])  # (2B,)
        both = self.logits(torch.cat([real, fake]), both_labels)  # (2B,)
        return both[: real.shape[0]], both[real.shape[0] :]

    def discriminator_forward(self, real: torch.Tensor, labels: torch.Tensor | None, z: torch.Tensor,
                              fake_labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """D's loss on ``real`` against ``G(z)`` (input regularizers included), and both logits ``(B,)``."""
        with self._autocast():
            with torch.no_grad():
                fake = self.generate(z, fake_labels).to(real.dtype)  # (B, *sample): no graph through G
            real_in, fake_in = self._augment(real), self._augment(fake)
            real_logits, fake_logits = self.score(real_in, labels, fake_in, fake_labels)  # (B,), (B,)
            d_loss = self.loss.discriminator_loss(real_logits, fake_logits)
            if self._input_regs:
                d_fn = self.discriminator if labels is None else _Conditioned(self.discriminator, labels)
                for reg in self._input_regs:
                    d_loss = d_loss + reg(d_fn, real_in, fake_in)
        return d_loss, real_logits, fake_logits

    def generator_forward(self, z: torch.Tensor, fake_labels: torch.Tensor | None, real: torch.Tensor | None = None,
                          labels: torch.Tensor | None = None) -> torch.Tensor:
        """G's loss on ``G(z)`` through D; with ``real``, ``generator_loss(fake_logits, real_logits)``."""
        with self._autocast():
            fake_in = self._augment(self.generate(z, fake_labels))  # (B, *sample)
            if real is None:
                return self.loss.generator_loss(self.logits(fake_in, fake_labels))
            fake_logits = self.logits(fake_in, fake_labels)  # (B,)
            with torch.no_grad():  # data through a frozen D: no graph, so no backward through D for these rows
                real_logits = self.logits(self._augment(real), labels)  # (B,)
            paired: Callable[..., torch.Tensor] = self.loss.generator_loss  # the needs_real_logits signature
            return paired(fake_logits, real_logits)

    def _apply(self, which: str, loss: torch.Tensor, optimizer: torch.optim.Optimizer,
               params: list[nn.Parameter]) -> None:
        """The tail of an update: guard the loss, backward, sync, guard the gradients, step."""
        self.guard.check_loss(which, loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.sync(params)
        self.guard.check_gradients(which, params)
        optimizer.step()

    # ------------------------------------------------------------------ the two updates

    def discriminator_update(self, real: torch.Tensor, labels: torch.Tensor | None = None) -> DUpdate:
        """One discriminator update on ``real`` ``(B, *sample_shape)`` against fresh fakes."""
        z, fake_labels = self.noise(real.shape[0])
        d_loss, real_logits, fake_logits = self._d_forward(real, labels, z, fake_labels)
        for reg in self._logit_regs:
            d_loss = d_loss + reg(real_logits, fake_logits)
        self._apply("discriminator", d_loss, self.d_optimizer, self._d_params)
        real_logits, fake_logits = real_logits.detach(), fake_logits.detach()
        return DUpdate(d_loss.detach(), real_logits.mean(), fake_logits.mean(), real_logits.sign().mean())

    def generator_update(self, batch_size: int, real: torch.Tensor | None = None,
                         labels: torch.Tensor | None = None) -> torch.Tensor:
        """One generator update on fresh noise, through D with D's parameters frozen; returns the loss.

        ``real`` (and its ``labels``) is the batch a ``needs_real_logits`` loss compares the fakes
        with (required then, unused otherwise).
        """
        if self._needs_real_logits and real is None:
            raise ValueError(f"generator_update needs the real batch: {type(self.loss).__name__} sets "
                             "needs_real_logits, so pass generator_update(batch_size, real, labels)")
        z, fake_labels = self.noise(batch_size)  # (B, latent)
        for p in self._d_params:  # no weight gradients for D: saves its weight-gradient matmuls
            p.requires_grad_(False)
        try:
            g_loss = (self._g_forward(z, fake_labels, real, labels) if self._needs_real_logits
                      else self._g_forward(z, fake_labels))
            self._apply("generator", g_loss, self.g_optimizer, self._g_params)
        finally:
            for p in self._d_params:
                p.requires_grad_(True)
        return g_loss.detach()

    def step(self, real: torch.Tensor, labels: torch.Tensor | None = None) -> StepResult:
        """``n_critic`` discriminator updates on ``real``, then one generator update."""
        self.generator.train()
        self.discriminator.train()
        for _ in range(self.n_critic):
            d = self.discriminator_update(real, labels)
        g_loss = self.generator_update(real.shape[0], real, labels)
        self.guard.end_step()
        return StepResult(d.d_loss, g_loss, d.d_real, d.d_fake, d.real_sign)

    # ------------------------------------------------------------------ state

    def config(self) -> dict[str, Any]:
        """How this step was set up, as plain values: saved in checkpoints and compared on resume."""
        loss_fields = {k: v for k, v in vars(self.loss).items() if isinstance(v, (int, float, str, bool))} \
            if hasattr(self.loss, "__dict__") else {}
        return {
            "loss": type(self.loss).__name__,
            "loss_fields": loss_fields,
            "n_critic": self.n_critic,
            "amp": self.amp,
            "regularizers": [type(r).__name__ for r in self.regularizers],
            "augment": None if self.augment is None else type(self.augment).__name__,
            "g_optimizer": optimizer_config(self.g_optimizer),
            "d_optimizer": optimizer_config(self.d_optimizer),
        }

    def state_dict(self) -> dict[str, Any]:
        """Optimizers, regularizer and augmentation state, and :meth:`config`."""
        aug = self.augment
        return {
            "g_optimizer": self.g_optimizer.state_dict(),
            "d_optimizer": self.d_optimizer.state_dict(),
            "regularizers": [r.state_dict() if hasattr(r, "state_dict") else None for r in self.regularizers],
            "augment": aug.state_dict() if aug is not None and hasattr(aug, "state_dict") else None,
            "config": self.config(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (check it first with :func:`torchgan_lite.training.restore.check_step_state`)."""
        self.g_optimizer.load_state_dict(state["g_optimizer"])
        self.d_optimizer.load_state_dict(state["d_optimizer"])
        for reg, saved in zip(self.regularizers, state.get("regularizers") or ()):
            if saved is not None and hasattr(reg, "load_state_dict"):
                reg.load_state_dict(saved)
        aug = self.augment
        if state.get("augment") is not None and aug is not None and hasattr(aug, "load_state_dict"):
            aug.load_state_dict(state["augment"])
