"""Generator EMA: an exponential moving average of the generator's weights, as a trainer callback.

GAN generators oscillate around a good solution; averaging their weights over
the last few thousand steps gives visibly cleaner samples for no extra training
(Yazıcı et al. 2019, "The Unusual Effectiveness of Averaging in GAN Training";
Karras et al. use it in every StyleGAN). The average lives in a second copy of
the generator, kept in eval mode and never trained:

    ema = GeneratorEMA(decay=0.999, warmup_steps=1000)
    ema.attach(trainer)          # trainer.ema_generator is now the averaged copy
    trainer.fit(loader, epochs=20)
    trainer.sample(64)           # samples from the average (use_ema=False: the live weights)

After each update ``n`` (counted from 0), every floating-point parameter is

    ema = beta_n * ema + (1 - beta_n) * live,   beta_n = decay * min(1, n / warmup_steps)

so the first update copies the live weights, the decay ramps up linearly over
``warmup_steps`` updates (the early, fast-changing weights are not kept for
thousands of steps), and is ``decay`` from then on (``warmup_steps=0``: always).

:meth:`GeneratorEMA.from_half_life` specifies the average as StyleGAN2-ADA does
(``ema_kimg``, ``ema_rampup``): by the number of *images* over which an old weight's
share halves, ramped up with the images seen so far,

    half_life = min(half_life_images, images_seen * rampup),   beta_n = 0.5 ** (images_per_update / half_life)

with ``images_seen = n * images_per_update`` (so again the first update copies), which
keeps the average's reach fixed in images whatever the batch size.
Buffers (batch-norm running statistics, spectral-norm singular vectors) are
*copied* from the live generator, not averaged: an average of unit vectors is
not a unit vector.

The update is one ``Tensor.lerp_`` per parameter and one ``copy_`` per buffer
(public operators; a handful of kernels for the recipe's eight tensors), with no host
synchronisation. It runs at ``Event.STEP_END`` every ``every`` steps.
:meth:`GeneratorEMA.attach` registers the callback's state under ``"ema"``, so
checkpoints hold ``extra["ema"]["generator"]`` (the averaged weights, which
``torchgan_lite.sample`` prefers) and a resumed run continues the same average.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from torchgan_lite.training.events import Event, RemovableHandle
from torchgan_lite.training.restore import check_module_state
from torchgan_lite.utils.checks import check_float, check_int

if TYPE_CHECKING:
    from torchgan_lite.training.trainer import GANTrainer

__all__ = ["STATE_NAME", "GeneratorEMA"]

STATE_NAME = "ema"


class GeneratorEMA:
    """An exponential moving average of a generator's weights, updated at every (``every``-th) step.

    Args:
        decay: The averaging factor once warmed up, in [0, 1). 0.999 averages over about
            the last 1,000 updates; 0.9999 over 10,000.
        warmup_steps: Updates over which the effective decay ramps linearly from 0 to
            ``decay`` (0: ``decay`` from the first update on).
        every: Update at every ``every``-th trainer step (the decay applies per update).

    Attributes:
        generator: The averaged copy (eval mode, no gradients), or None before
            :meth:`attach`/:meth:`reset`.
        num_updates: Updates done so far (restored from checkpoints).
    """

    def __init__(self, decay: float = 0.999, warmup_steps: int = 0, every: int = 1) -> None:
        self._check_and_set(decay, warmup_steps, every)
        self.num_updates = 0
        self.generator: nn.Module | None = None
        self._source: nn.Module | None = None
        #: Half-life mode (see :meth:`from_half_life`): images per half-life, images per step, ramp-up.
        self.half_life_images: float | None = None
        self.batch_size: int | None = None
        self.rampup: float | None = None

    @classmethod
    def from_half_life(cls, half_life_images: float, batch_size: int, rampup: float | None = 0.05,
                       every: int = 1) -> GeneratorEMA:
        """An EMA whose reach is given in images, with StyleGAN2-ADA's ramp-up (``ema_kimg``, ``ema_rampup``).

        Each update uses ``beta = 0.5 ** (batch_size * every / max(h, 1e-8))`` with
        ``h = min(half_life_images, num_updates * batch_size * every * rampup)`` (``rampup=None``:
        ``h = half_life_images`` from the first update on).

        Args:
            half_life_images: Images over which an old weight's share of the average halves
                (StyleGAN2-ADA: ``ema_kimg * 1000``, 10,000 in the paper's configurations).
            batch_size: Images per training step (the global batch under data parallelism).
            rampup: The half-life is at most this fraction of the images seen so far
                (StyleGAN2-ADA: 0.05); None: no ramp-up.
            every: Update at every ``every``-th step (so ``batch_size * every`` images an update).
        """
        check_float("half_life_images", half_life_images, 0.0, low_open=True)
        check_int("batch_size", batch_size, 1)
        if rampup is not None:
            check_float("rampup", rampup, 0.0, low_open=True)
        # decay: the asymptotic per-update decay, for display; current_decay() is what is used.
        ema = cls(decay=0.5 ** (batch_size * every / half_life_images), every=every)
        ema.half_life_images = float(half_life_images)
        ema.batch_size = batch_size
        ema.rampup = None if rampup is None else float(rampup)
        return ema

    def _check_and_set(self, decay: float, warmup_steps: int, every: int) -> None:
        check_float("decay", decay, 0.0, 1.0, high_open=True)
        for name, value, lo in (("warmup_steps", warmup_steps, 0), ("every", every, 1)):
            check_int(name, value, lo)
        self.decay = float(decay)
        self.warmup_steps = warmup_steps
        self.every = every

    # ------------------------------------------------------------------ arithmetic

    def current_decay(self) -> float:
        """The decay the next update will use: ``decay * min(1, num_updates / warmup_steps)``.

        In half-life mode (:meth:`from_half_life`): ``0.5 ** (images_per_update / max(h, 1e-8))``
        with ``h = min(half_life_images, num_updates * images_per_update * rampup)``.
        """
        if self.half_life_images is not None:
            assert self.batch_size is not None
            per_update = self.batch_size * self.every
            half_life = self.half_life_images
            if self.rampup is not None:
                half_life = min(half_life, self.num_updates * per_update * self.rampup)
            return 0.5 ** (per_update / max(half_life, 1e-8))
        if self.warmup_steps == 0:
            return self.decay
        return self.decay * min(1.0, self.num_updates / self.warmup_steps)

    def reset(self, source: nn.Module) -> nn.Module:
        """Start the average from a copy of ``source`` (an eval-mode deepcopy without gradients).

        Args:
            source: The live generator to follow.

        Returns:
            The averaged copy (also ``self.generator``).
        """
        if not isinstance(source, nn.Module):
            raise TypeError(f"source must be a torch.nn.Module (the generator), got {type(source).__name__}")
        ema = copy.deepcopy(source)
        ema.eval()
        ema.requires_grad_(False)
        self.generator = ema
        self.num_updates = 0
        self._bind(source)
        return ema

    def _bind(self, source: nn.Module) -> None:
        """Check once that the averaged copy and ``source`` have the same tensors, by name and shape."""
        assert self.generator is not None
        ema = dict(self.generator.named_parameters()) | {f"buffer:{k}": b for k, b in self.generator.named_buffers()}
        live = dict(source.named_parameters()) | {f"buffer:{k}": b for k, b in source.named_buffers()}
        if list(ema) != list(live) or any(ema[k].shape != live[k].shape for k in ema):
            raise ValueError("the EMA copy and the generator have different parameters or buffers; "
                             "call reset(generator) after changing the generator's structure")
        self._source = source

    @torch.no_grad()
    def update(self, source: nn.Module | None = None) -> None:
        """One averaging step towards ``source`` (default: the generator given to ``reset``/``attach``).

        ``ema <- ema + (1 - beta) * (live - ema)`` for the floating-point parameters
        (``beta`` from :meth:`current_decay`), buffers copied; no host synchronisation.
        The tensors are looked up on every call (a few dozen at most), so moving the
        generator to another device, or loading weights into it, is followed.
        """
        if self.generator is None:
            raise RuntimeError("GeneratorEMA.update() before attach(trainer) or reset(generator)")
        if source is not None and source is not self._source:
            self._bind(source)
        assert self._source is not None
        pairs = [(e, s) for e, s in zip(self.generator.parameters(), self._source.parameters())
                 if e.is_floating_point()]
        weight = 1.0 - self.current_decay()
        for ema_param, live_param in pairs:
            ema_param.lerp_(live_param, weight)
        for ema_buffer, live_buffer in zip(self.generator.buffers(), self._source.buffers()):
            ema_buffer.copy_(live_buffer)
        self.num_updates += 1

    # ------------------------------------------------------------------ trainer

    def attach(self, trainer: GANTrainer) -> list[RemovableHandle]:
        """Follow ``trainer.generator``: set ``trainer.ema_generator``, save in checkpoints, update at STEP_END.

        Attach before ``trainer.load_checkpoint`` so a resumed run restores the average.

        Returns:
            The handle of the STEP_END handler.
        """
        for attr in ("generator", "add_callback", "register_state"):
            if not hasattr(trainer, attr):
                raise TypeError(f"trainer must be a GANTrainer (no {attr!r}), got {type(trainer).__name__}")
        if getattr(trainer, "ema_generator", None) is not None and trainer.ema_generator is not self.generator:
            raise ValueError("the trainer already has an ema_generator (another GeneratorEMA attached)")
        self.reset(trainer.generator)
        trainer.ema_generator = self.generator
        trainer.register_state(STATE_NAME, self)
        return [trainer.add_callback(Event.STEP_END, self._on_step, every=self.every)]

    def _on_step(self, trainer: GANTrainer) -> None:
        self.update()

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """``{"generator": averaged weights, "num_updates", "decay", "warmup_steps", "every", "half_life_images",
        "batch_size", "rampup"}`` (the last three None unless made by :meth:`from_half_life`)."""
        if self.generator is None:
            raise RuntimeError("GeneratorEMA.state_dict() before attach(trainer) or reset(generator)")
        return {"generator": self.generator.state_dict(), "num_updates": self.num_updates, "decay": self.decay,
                "warmup_steps": self.warmup_steps, "every": self.every, "half_life_images": self.half_life_images,
                "batch_size": self.batch_size, "rampup": self.rampup}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (checked completely before anything changes).

        The averaging settings are this object's (a run may be resumed with another
        decay, or another half-life); the averaged weights and ``num_updates`` come from
        ``state``. States saved before half-life mode existed load the same way.

        Raises:
            ValueError: ``state`` is not a GeneratorEMA state, or its weights do not fit.
        """
        if self.generator is None:
            raise RuntimeError("GeneratorEMA.load_state_dict() before attach(trainer) or reset(generator)")
        if not isinstance(state, dict) or not isinstance(state.get("generator"), dict):
            raise ValueError(f"expected a GeneratorEMA.state_dict() with a 'generator' entry, got "
                             f"{sorted(state) if isinstance(state, dict) else type(state).__name__}")
        n = state.get("num_updates")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"EMA state: num_updates must be an int >= 0, got {n!r}")
        saved = state["generator"]
        check_module_state("EMA state", "generator", self.generator, saved)
        self.generator.load_state_dict(saved)
        self.num_updates = n
