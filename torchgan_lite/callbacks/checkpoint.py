"""ModelCheckpoint: save checkpoints every N epochs, keep the last K by step, save on a stop."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from torchgan_lite.checkpoints.format import check_keep_last
from torchgan_lite.training.events import Event, RemovableHandle
from torchgan_lite.utils.checks import check_bool, check_int, check_path

if TYPE_CHECKING:
    from torchgan_lite.training.trainer import GANTrainer

__all__ = ["ModelCheckpoint"]


class ModelCheckpoint:
    """Saves the full trainer state every ``every`` epochs, at the end of fit, and on Ctrl-C.

    Args:
        path: The checkpoint file (written atomically).
        every: Epochs between saves.
        keep_last: None or an int >= 0. K: the file also gets a step-numbered name
            (``checkpoint-000001200.pt`` beside ``checkpoint.pt``), and the K older steps' files
            are kept (see :func:`torchgan_lite.checkpoints.format.save_checkpoint`).
        on_interrupt: Also save when ``fit`` is interrupted by ``KeyboardInterrupt``.

    Raises:
        TypeError, ValueError: an argument of the wrong type or out of range, naming it.
    """

    def __init__(self, path: str | os.PathLike[str], every: int = 1, keep_last: int | None = None,
                 on_interrupt: bool = True) -> None:
        self.path = check_path("path", path)
        if self.path.is_dir():
            raise ValueError(f"path {self.path} is a folder; give the checkpoint file's path")
        self.every = check_int("every", every)
        self.keep_last = None if keep_last is None else check_keep_last(keep_last)
        self.on_interrupt = check_bool("on_interrupt", on_interrupt)
        self.last_saved_step: int | None = None

    def attach(self, trainer: GANTrainer) -> list[RemovableHandle]:
        handles = [trainer.add_callback(Event.EPOCH_END, self._save, every=self.every),
                   trainer.add_callback(Event.FIT_END, self._save)]
        if self.on_interrupt:
            handles.append(trainer.add_callback(Event.EXCEPTION, self._save_if_interrupted))
        return handles

    def _save(self, trainer: GANTrainer) -> None:
        if self.last_saved_step == trainer.state.step:
            # EPOCH_END and FIT_END at the same step: one write is enough. Decided from
            # the step alone, identically on every rank (saving is a collective).
            return
        trainer.save_checkpoint(self.path, keep_last=self.keep_last)
        self.last_saved_step = trainer.state.step

    def _save_if_interrupted(self, trainer: GANTrainer) -> None:
        # Only at a step boundary (the trainer defers a first Ctrl-C to one): a save in the
        # middle of a step would record D updated but G not. Not with several ranks: they
        # are interrupted at different steps, and saving is collective.
        if isinstance(trainer.state.exception, KeyboardInterrupt) and not trainer.in_step \
                and trainer.world_size == 1:
            self._save(trainer)
