"""Stopping a run cleanly on Ctrl-C and on the SIGTERM of ``kill``, ``timeout``, Slurm and ``docker stop``.

:func:`finish_step_on_signals` turns a first SIGINT or SIGTERM into a request to stop at
the next step boundary (the training loop then raises
:class:`~torchgan_lite.training.state.TrainingInterrupted`, and ``ModelCheckpoint`` saves a
consistent state); a second one interrupts at once. Python lets only the main thread
install handlers, and several data-parallel ranks could stop at different steps, so
elsewhere it does nothing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

from torchgan_lite.training.state import TrainingInterrupted

__all__ = ["SIGNALS", "finish_step_on_signals"]

#: The signals that stop a run at a step boundary.
SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def finish_step_on_signals(on_first: Callable[[int], None], step: Callable[[], int],
                           enabled: bool = True) -> Iterator[None]:
    """Within the block, the first signal calls ``on_first(signum)``; a second raises at once.

    Args:
        on_first: Records the request (the trainer sets its stop flag).
        step: The steps completed so far, for the message of a second signal.
        enabled: False (several processes): leave the handlers alone.
    """
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {s: signal.getsignal(s) for s in SIGNALS}

    def handler(signum: int, frame: Any) -> None:
        if received:
            raise TrainingInterrupted(f"{signal.Signals(signum).name} received twice: stopped inside step "
                                      f"{step() + 1}", signum, step())
        received.append(signum)
        on_first(signum)

    for s in SIGNALS:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
