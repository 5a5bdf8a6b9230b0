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
Buffers (batch-norm running statistics, spectral-norm singular vectors) are
*copied* from the live generator, not averaged: an average of unit vectors is
not a unit vector.

The update is one ``torch._foreach_lerp_`` over the parameter list and one
``torch._foreach_copy_`` over the buffers: a few fused kernels, no host
synchronisation. It runs at ``Event.STEP_END`` every ``every`` steps.
:meth:`GeneratorEMA.attach` registers the callback's state under ``"ema"``, so
checkpoints hold ``extra["ema"]["generator"]`` (the averaged weights, which
``torchgan_lite.sample`` prefers) and a resumed run continues the same average.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .checkpoint import check_module_state
from .events import Event, RemovableHandle

if TYPE_CHECKING:
    from .trainer import GANTrainer

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
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not math.isfinite(decay):
            raise TypeError(f"decay must be a float in [0, 1), got {decay!r}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        for name, value, lo in (("warmup_steps", warmup_steps, 0), ("every", every, 1)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {value!r}")
            if value < lo:
                raise ValueError(f"{name} must be >= {lo}, got {value}")
        self.decay = float(decay)
        self.warmup_steps = warmup_steps
        self.every = every
        self.num_updates = 0
        self.generator: nn.Module | None = None
        self._source: nn.Module | None = None

    # ------------------------------------------------------------------ arithmetic

    def current_decay(self) -> float:
        """The decay the next update will use: ``decay * min(1, num_updates / warmup_steps)``."""
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
        if pairs:
            ema_params, live_params = zip(*pairs)
            torch._foreach_lerp_(list(ema_params), list(live_params), 1.0 - self.current_decay())
        ema_buffers, live_buffers = list(self.generator.buffers()), list(self._source.buffers())
        if ema_buffers:
            torch._foreach_copy_(ema_buffers, live_buffers)
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
        """``{"generator": averaged weights, "num_updates", "decay", "warmup_steps", "every"}``."""
        if self.generator is None:
            raise RuntimeError("GeneratorEMA.state_dict() before attach(trainer) or reset(generator)")
        return {"generator": self.generator.state_dict(), "num_updates": self.num_updates, "decay": self.decay,
                "warmup_steps": self.warmup_steps, "every": self.every}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (checked completely before anything changes).

        The averaging settings are this object's (a run may be resumed with another
        decay); the averaged weights and ``num_updates`` come from ``state``.

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
