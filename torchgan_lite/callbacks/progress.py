"""Ready-made handlers for :class:`~torchgan_lite.GANTrainer` events.

Each callback is a small object with ``attach(trainer)``, which registers its
handlers (``fn(trainer)``) and returns their removable handles. They read values
from the device only at their own intervals, so the training step stays free of
host synchronisation. Every constructor argument is checked when the callback is
built (flags are real bools, intervals ints >= 1, paths str or os.PathLike, streams
objects with ``write``), so a wrong value fails at once, naming the argument, not
at the first epoch end.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any, TextIO

from torchgan_lite.training.events import Event, RemovableHandle
from torchgan_lite.utils.checks import check_bool, check_int, check_stream

if TYPE_CHECKING:
    from torchgan_lite.training.trainer import GANTrainer

__all__ = ["EpochLogger", "ProgressBar"]

class ProgressBar:
    """A tqdm bar over the steps of ``fit``, with live losses and steps/s.

    Args:
        refresh_every: Steps between reads of the last losses (each read is one
            host synchronisation).
        file: Where the bar is drawn (stderr by default).
        disable: Draw nothing. Ranks other than 0 never draw.
    """

    def __init__(self, refresh_every: int = 20, file: TextIO | None = None, disable: bool = False) -> None:
        self.refresh_every = check_int("refresh_every", refresh_every)
        self.file = check_stream("file", file)
        self.disable = check_bool("disable", disable)
        self._bar: Any = None
        self._last_step = 0

    def attach(self, trainer: GANTrainer) -> list[RemovableHandle]:
        return [
            trainer.add_callback(Event.FIT_START, self._open),
            trainer.add_callback(Event.STEP_END, self._update, every=self.refresh_every),
            trainer.add_callback(Event.FIT_END, self._close),
            trainer.add_callback(Event.EXCEPTION, self._close),
        ]

    def _open(self, trainer: GANTrainer) -> None:
        from tqdm.auto import tqdm

        st = trainer.state
        data = trainer.data
        per_epoch = len(data) if hasattr(data, "__len__") else None  # type: ignore[arg-type]
        total = st.max_epochs * per_epoch if per_epoch is not None else None
        if st.max_steps is not None:
            total = st.max_steps if total is None else min(total, st.max_steps)
        self._bar = tqdm(total=total, initial=st.step, unit="step", dynamic_ncols=True,
                         file=self.file if self.file is not None else sys.stderr,
                         disable=self.disable or not trainer.is_main_process)
        self._last_step = st.step

    def _update(self, trainer: GANTrainer) -> None:
        if self._bar is None or trainer.state.last is None:
            return
        values = trainer.state.last.as_dict()
        st = trainer.state  # the epoch in progress, "k/N", as the messages say "in epoch k of N"
        self._bar.set_postfix(epoch=f"{st.epoch + 1}/{st.max_epochs}", d=f"{values['d_loss']:.3f}",
                              g=f"{values['g_loss']:.3f}", refresh=False)
        self._bar.update(trainer.state.step - self._last_step)
        self._last_step = trainer.state.step

    def _close(self, trainer: GANTrainer) -> None:
        if self._bar is not None:
            self._bar.update(trainer.state.step - self._last_step)
            self._bar.close()
            self._bar = None


class EpochLogger:
    """One summary line per completed epoch (mean losses, D outputs, speed, metrics); rank 0 only.

    Args:
        every: Epochs between lines.
        file: None: the line is logged at INFO on the ``"torchgan_lite.callbacks"`` logger
            (``logging.basicConfig(level=logging.INFO)`` shows it; the training command does);
            a text stream: written there instead, above a live progress bar.
    """

    def __init__(self, every: int = 1, file: TextIO | None = None) -> None:
        self.every = check_int("every", every)
        self.file = check_stream("file", file)

    def attach(self, trainer: GANTrainer) -> list[RemovableHandle]:
        return [trainer.add_callback(Event.EPOCH_END, self._log, every=self.every)]

    def _log(self, trainer: GANTrainer) -> None:
        if not trainer.is_main_process:
            return
        h = trainer.state.history[-1]
        line = (f"epoch {h.epoch}/{trainer.state.max_epochs} step {h.step}: d_loss {h.d_loss:.4f} "
                f"g_loss {h.g_loss:.4f} D(real) {h.d_real:+.3f} D(fake) {h.d_fake:+.3f} "
                f"{h.steps_per_s:.1f} steps/s")
        extra = " ".join(f"{k} {v:.4g}" for k, v in trainer.state.metrics.items())
        if self.file is None:
            logging.getLogger(__name__).info("%s", line + (f" | {extra}" if extra else ""))
            return
        from tqdm.auto import tqdm

        # tqdm.write prints above a live progress bar instead of onto its line.
        tqdm.write(line + (f" | {extra}" if extra else ""), file=self.file)
