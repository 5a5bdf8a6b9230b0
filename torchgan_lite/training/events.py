"""Training events and the per-event handler lists of the trainer.

After pytorch-ignite's ``engine/events.py``, with one simplification: a handler
always has the signature ``fn(trainer)``; nothing inspects signatures or passes
extra arguments (a handler that needs more closes over it).

Handlers of one event run in registration order. ``every=N`` on a step event
runs the handler when ``trainer.state.step`` is a multiple of N; on an epoch
event, when the epoch count is (``EPOCH_START``: the epoch about to run, counted
from 1; ``EPOCH_END``: the epochs completed). FIT_START, FIT_END and EXCEPTION
happen once per ``fit``, so they take ``every=1`` only.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from torchgan_lite.utils.checks import check_int

__all__ = ["Event", "EventHandlers", "Handler", "RemovableHandle"]

#: What handlers receive: the trainer (this module knows it only as a type parameter, so it
#: imports nothing from the trainer).
T = TypeVar("T")
Handler = Callable[[T], Any]


class Event(enum.Enum):
    """Points in :meth:`GANTrainer.fit` where handlers run.

    Order in one fit: ``FIT_START``, then per epoch ``EPOCH_START``, per step
    ``STEP_START``/``STEP_END``, ``EPOCH_END``; finally ``FIT_END``. ``EXCEPTION``
    replaces ``FIT_END`` when an exception escapes; the trainer then re-raises it.
    ``CHECKPOINT_SAVED`` fires after :meth:`GANTrainer.save_checkpoint` wrote a file.
    ``NONFINITE`` fires when a loss is NaN or infinite, before any update is applied
    (``trainer.state.nonfinite`` says which); a handler may call ``trainer.skip_step()``.
    """

    FIT_START = "fit_start"
    EPOCH_START = "epoch_start"
    STEP_START = "step_start"
    STEP_END = "step_end"
    EPOCH_END = "epoch_end"
    FIT_END = "fit_end"
    EXCEPTION = "exception"
    CHECKPOINT_SAVED = "checkpoint_saved"
    NONFINITE = "nonfinite"


_STEP_EVENTS = frozenset({Event.STEP_START, Event.STEP_END})
_EPOCH_EVENTS = frozenset({Event.EPOCH_START, Event.EPOCH_END})


class RemovableHandle:
    """Returned by ``add_callback``; ``remove()`` unregisters the handler (idempotent)."""

    def __init__(self, registry: EventHandlers[Any], event: Event, key: int) -> None:
        self._registry = registry
        self.event = event
        self._key = key

    def remove(self) -> None:
        self._registry._handlers[self.event].pop(self._key, None)

    @property
    def active(self) -> bool:
        """Whether the handler is still registered."""
        return self._key in self._registry._handlers[self.event]


class EventHandlers(Generic[T]):
    """Per-event ordered handler lists. The trainer owns one; users go through the trainer."""

    def __init__(self) -> None:
        # dicts keep insertion order, so handlers run in registration order
        self._handlers: dict[Event, dict[int, tuple[Handler[T], int]]] = {e: {} for e in Event}
        self._keys = itertools.count()

    def add(self, event: Event, fn: Handler[T], every: int = 1) -> RemovableHandle:
        """Register ``fn(trainer)`` for ``event``; see the module docstring for ``every``."""
        if not isinstance(event, Event):
            raise TypeError(f"event must be a torchgan_lite.Event, got {event!r} ({type(event).__name__}); "
                            f"known events: {', '.join(e.name for e in Event)}")
        if not callable(fn):
            raise TypeError(f"handler must be callable as fn(trainer), got {fn!r}")
        check_int("every", every, 1)
        if every != 1 and event not in _STEP_EVENTS | _EPOCH_EVENTS:
            raise ValueError(f"every={every} makes no sense for {event.name}, which fires once per fit; use every=1")
        key = next(self._keys)
        self._handlers[event][key] = (fn, every)
        return RemovableHandle(self, event, key)

    def on(self, event: Event, every: int = 1) -> Callable[[Handler[T]], Handler[T]]:
        """Decorator form of :meth:`add`: registers ``fn`` and returns it unchanged."""
        if not isinstance(event, Event):
            raise TypeError(f"event must be a torchgan_lite.Event, got {event!r}")

        def decorator(fn: Handler[T]) -> Handler[T]:
            self.add(event, fn, every)
            return fn

        return decorator

    def has(self, event: Event) -> bool:
        """Whether any handler is registered for ``event`` (lets the trainer skip work)."""
        return bool(self._handlers[event])

    def fire(self, event: Event, trainer: T, count: int = 0) -> None:
        """Run the handlers of ``event`` whose ``every`` divides ``count``."""
        handlers = self._handlers[event]
        if not handlers:
            return
        for fn, every in list(handlers.values()):  # a copy: a handler may remove itself
            if every == 1 or count % every == 0:
                fn(trainer)
