"""Logging callbacks: TensorBoard scalars and images, and a JSON-lines history of the epochs.

Both follow :mod:`torchgan_lite.callbacks`: a small object whose ``attach(trainer)``
registers handlers ``fn(trainer)`` and returns their handles. Only the main process
(rank 0 of a data-parallel run) writes.

- :class:`TensorBoardLogger`: ``torch.utils.tensorboard`` event files (needs the
  ``tensorboard`` package: ``pip install 'torchgan_lite[tensorboard]'``): the epoch
  means, the step losses every ``step_every`` steps, steps/s, everything in
  ``trainer.state.metrics``, and the fixed-noise sample grid as an image.
- :class:`JSONLHistory`: ``history.jsonl``, one JSON object per completed epoch (the
  fields of :class:`~torchgan_lite.EpochStats` and that epoch's metrics), rewritten
  atomically at each epoch end, so a run killed mid-write never leaves a torn line
  and a resumed run never repeats an epoch.

Messages of the library go through :mod:`logging` under the ``"torchgan_lite"``
logger (see :data:`LOGGER_NAME`). W&B, MLflow and other trackers need no code of
ours: a handler of a few lines on ``Event.EPOCH_END`` reads ``trainer.state.history[-1]``
(docs/logging.md shows both).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from torchgan_lite.callbacks.reporting import HistoryCSV
from torchgan_lite.training.events import Event, RemovableHandle
from torchgan_lite.utils.atomic import atomic_open
from torchgan_lite.utils.checks import check_int, check_path

if TYPE_CHECKING:
    from torchgan_lite.training.trainer import GANTrainer

__all__ = ["LOGGER_NAME", "JSONLHistory", "TensorBoardLogger", "get_logger"]

#: The name of the library's :mod:`logging` logger; children are ``torchgan_lite.<module>``.
LOGGER_NAME = "torchgan_lite"


def get_logger(name: str | None = None) -> logging.Logger:
    """The library's logger (``"torchgan_lite"``), or its child ``"torchgan_lite.<name>"``."""
    return logging.getLogger(LOGGER_NAME if not name else f"{LOGGER_NAME}.{name}")


def _is_main(trainer: GANTrainer) -> bool:
    return bool(getattr(trainer, "is_main_process", True))


def _finite(value: float) -> float | None:
    """JSON has no NaN or infinity: those become null."""
    return value if math.isfinite(value) else None


class TensorBoardLogger:
    """Writes a run's losses, metrics, speed and sample grids for TensorBoard.

    Tags (the x axis is ``trainer.state.step`` throughout):

    - ``epoch/d_loss``, ``epoch/g_loss``, ``epoch/d_real``, ``epoch/d_fake``, ``epoch/steps_per_s``:
      the means of each completed epoch.
    - ``step/d_loss``, ``step/g_loss``, ``step/steps_per_s``: the last step's losses every
      ``step_every`` steps (each read is one host synchronisation) and the speed since the
      previous read.
    - ``metrics/<name>``: every value in ``trainer.state.metrics`` at an epoch end.
    - ``samples``: a grid of ``trainer.sample(len(z), z)`` every ``image_every`` epochs
      and at the end of ``fit`` (needs ``z``).

    Args:
        log_dir: Folder of the event files (``tensorboard --logdir`` it, or a parent).
        step_every: Steps between step-loss scalars.
        z: A fixed noise bank ``(n, latent_dim)``, e.g.
            :func:`torchgan_lite.callbacks.reporting.fixed_noise`; None: no images.
        labels: Conditional generators: the classes ``(n,)`` of the grid (None draws them).
        image_every: Epochs between sample grids.
        nrow: Images per grid row.

    Raises:
        ModuleNotFoundError: at :meth:`attach`, when the ``tensorboard`` package is not
            installed (the message says how to install it).
    """

    def __init__(self, log_dir: str | os.PathLike[str], step_every: int = 50, z: torch.Tensor | None = None,
                 labels: torch.Tensor | None = None, image_every: int = 1, nrow: int = 8) -> None:
        self.log_dir = check_path("log_dir", log_dir)
        self.step_every = check_int("step_every", step_every)
        self.image_every = check_int("image_every", image_every)
        self.nrow = check_int("nrow", nrow)
        if z is not None and (not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[0] < 1):
            raise ValueError(f"z must be None or a noise tensor (n, latent_dim) with n >= 1, got "
                             f"{tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__}")
        if labels is not None and (z is None or not isinstance(labels, torch.Tensor)
                                   or tuple(labels.shape) != (z.shape[0],)):
            raise ValueError("labels must be None or an int64 tensor (n,) matching the rows of z")
        self.z, self.labels = z, labels
        self.writer: Any = None
        self._last_time = 0.0
        self._last_step = 0

    def attach(self, trainer: GANTrainer) -> list[RemovableHandle]:
        if self.z is not None and self.z.shape[1] != trainer.latent_dim:
            raise ValueError(f"z has {self.z.shape[1]} columns but the trainer's latent_dim is {trainer.latent_dim}")
        try:
            import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it; fail at attach, not mid-run)
        except ModuleNotFoundError as err:
            raise ModuleNotFoundError("TensorBoardLogger needs the tensorboard package: "
                                      "pip install 'torchgan_lite[tensorboard]'") from err
        return [trainer.add_callback(Event.FIT_START, self._open),
                trainer.add_callback(Event.STEP_END, self._step, every=self.step_every),
                trainer.add_callback(Event.EPOCH_END, self._epoch),
                trainer.add_callback(Event.FIT_END, self._final),
                trainer.add_callback(Event.EXCEPTION, self._close)]

    def _open(self, trainer: GANTrainer) -> None:
        if not _is_main(trainer):
            return
        from torch.utils.tensorboard import SummaryWriter

        if self.writer is None:
            self.writer = SummaryWriter(log_dir=str(self.log_dir))
        self._last_time, self._last_step = time.perf_counter(), trainer.state.step

    def _step(self, trainer: GANTrainer) -> None:
        last = trainer.state.last
        if self.writer is None or last is None:
            return
        step = trainer.state.step
        values = last.as_dict()  # one host read of the last step's losses
        self.writer.add_scalar("step/d_loss", values["d_loss"], step)
        self.writer.add_scalar("step/g_loss", values["g_loss"], step)
        now = time.perf_counter()
        if step > self._last_step and now > self._last_time:
            self.writer.add_scalar("step/steps_per_s", (step - self._last_step) / (now - self._last_time), step)
        self._last_time, self._last_step = now, step

    def _epoch(self, trainer: GANTrainer) -> None:
        if self.writer is None:
            return
        st = trainer.state
        h = st.history[-1]
        for name in ("d_loss", "g_loss", "d_real", "d_fake", "steps_per_s"):
            self.writer.add_scalar(f"epoch/{name}", getattr(h, name), st.step)
        for name, value in st.metrics.items():
            self.writer.add_scalar(f"metrics/{name}", float(value), st.step)
        if self.z is not None and st.epoch % self.image_every == 0:
            self._image(trainer)
        self.writer.flush()

    def _image(self, trainer: GANTrainer) -> None:
        from torchvision.utils import make_grid

        assert self.z is not None and self.writer is not None
        images = trainer.sample(self.z.shape[0], z=self.z, labels=self.labels).float().cpu()  # (n, C, H, W)
        grid = make_grid(images, nrow=self.nrow, padding=2, normalize=True, value_range=(-1, 1))  # (C, H', W')
        self.writer.add_image("samples", grid, trainer.state.step)

    def _final(self, trainer: GANTrainer) -> None:
        if self.writer is not None and self.z is not None:
            self._image(trainer)
        self._close(trainer)

    def _close(self, trainer: GANTrainer) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class JSONLHistory(HistoryCSV):
    """``history.jsonl``: one JSON object per completed epoch, beside ``history.csv``.

    Each line holds the fields of :class:`~torchgan_lite.EpochStats` (``epoch``, ``step``,
    ``d_loss``...) and the metrics measured at that epoch (NaN and infinities become
    ``null``). The file is rewritten atomically from ``trainer.state.history`` at every
    epoch end and when ``fit`` stops, so it always matches the trainer, also after a
    resume from an older checkpoint. Which epoch measured what is kept in checkpoints
    (``trainer.register_state`` under ``"history_jsonl"``); attach it before
    ``trainer.load_checkpoint``, after the callbacks that fill ``state.metrics``.

    Args:
        path: The ``.jsonl`` file (its folder is created).
    """

    state_name = "history_jsonl"  # which epoch measured what: HistoryCSV's bookkeeping, its own entry

    def rows(self, trainer: GANTrainer) -> list[dict[str, Any]]:
        """The objects of the file: one per completed epoch, oldest first."""
        rows = []
        for h in trainer.state.history:
            row: dict[str, Any] = dataclasses.asdict(h)
            row.update(self.metrics_by_epoch.get(h.epoch, {}))
            rows.append({k: _finite(v) if isinstance(v, float) else v for k, v in row.items()})
        return rows

    def write(self, trainer: GANTrainer) -> Path | None:
        """Write the file now (None, and nothing written, on a non-main process)."""
        if not _is_main(trainer):
            return None
        text = "".join(json.dumps(row, allow_nan=False) + "\n" for row in self.rows(trainer))
        with atomic_open(self.path, "w", what="write the history") as f:
            f.write(text)
        return self.path
