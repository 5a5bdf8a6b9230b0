"""What a training run writes and says: its report callbacks, metrics, console messages and failure lines.

The files in ``--out`` (grids, ``history.csv``/``.jsonl``, ``losses.png``, TensorBoard events)
come from the library's callbacks, attached here in the order their handlers must run at
an epoch end: metrics first, then the files that show them (the checkpoint and ``run.json``
are attached last, by :mod:`torchgan_lite.cli.run`).
"""

from __future__ import annotations

import argparse
import errno
import logging
import shutil
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from torchgan_lite.callbacks import progress, reporting
from torchgan_lite.callbacks.loggers import LOGGER_NAME, JSONLHistory, TensorBoardLogger
from torchgan_lite.callbacks.metrics import MetricsCallback
from torchgan_lite.cli.common import CLIError, about_option
from torchgan_lite.cli.options import NUM_CLASSES
from torchgan_lite.cli.sources import TrainingData
from torchgan_lite.metrics.classes import generator_class_accuracy
from torchgan_lite.metrics.classifier import load_classifier
from torchgan_lite.nets.conditional import digit_grid_labels
from torchgan_lite.training.events import Event, RemovableHandle
from torchgan_lite.training.trainer import GANTrainer

__all__ = [
    "MAX_GRID_CLASSES", "ClassAccuracy", "attach_evaluators", "attach_reports", "class_grid_prefix",
    "console_logging", "epoch_words", "evaluators", "write_failure"
]

#: A conditional run's class grid shows at most this many classes, one row each.
MAX_GRID_CLASSES = 10


class ClassAccuracy:
    """Every ``every`` epochs: the fraction of samples of digit d that the metrics classifier calls d.

    Writes ``class_accuracy``, ``min_class_accuracy`` and ``class_accuracy_<d>`` for each digit
    into ``trainer.state.metrics`` (:func:`~torchgan_lite.metrics.classes.generator_class_accuracy`,
    noise seed 1234).

    Args:
        every: Epochs between evaluations.
        per_class: Samples drawn for each digit.
    """

    def __init__(self, every: int, per_class: int) -> None:
        self.every, self.per_class = every, per_class
        self.last: dict[str, float] = {}

    def attach(self, trainer: GANTrainer) -> list[RemovableHandle]:
        return [trainer.add_callback(Event.EPOCH_END, self._evaluate, every=self.every)]

    def _evaluate(self, trainer: GANTrainer) -> None:
        self.last = generator_class_accuracy(
            lambda z, y: trainer.sample(y.shape[0], z=z, labels=y), trainer.latent_dim, load_classifier(trainer.device),
            NUM_CLASSES, self.per_class, seed=1234, batch_size=500, device=trainer.device)
        trainer.state.metrics["class_accuracy"] = self.last["accuracy"]
        trainer.state.metrics["min_class_accuracy"] = self.last["min_class_accuracy"]
        for c in range(NUM_CLASSES):  # per digit, so that history.csv shows which digits lag
            trainer.state.metrics[f"class_accuracy_{c}"] = self.last[f"accuracy_{c}"]


def _mnist_scored(args: argparse.Namespace, data: TrainingData) -> bool:
    """Whether ``--eval-every`` is MNIST's own evaluation (the shipped classifier against MNIST's test set)."""
    return args.data == "mnist" and data.image_shape == (1, 28, 28) and args.eval_features in (None, "mnist")


def evaluators(args: argparse.Namespace, data: TrainingData, num_classes: int | None) -> list[Any]:
    """The quality-metric callbacks of ``--eval-every`` (none when it is 0).

    MNIST is scored by :class:`~torchgan_lite.metrics.evaluator.MNISTEvaluator` (a conditional
    run adds its class accuracy, :class:`ClassAccuracy`); any other data by ``--eval-features``
    (default Inception, torch-fidelity's) against the training images themselves.
    """
    if args.eval_every == 0:
        return []
    if num_classes is not None and args.eval_n < num_classes:
        raise CLIError(f"--eval-n must be >= {num_classes} for a conditional run (one sample per class), "
                       f"got {args.eval_n}")
    if _mnist_scored(args, data):
        found: list[Any] = [MetricsCallback(every=args.eval_every, n=args.eval_n, data_root=args.data_root)]
        if num_classes is not None:
            found.append(ClassAccuracy(args.eval_every, args.eval_n // NUM_CLASSES))
        return found
    with about_option("--eval-features", args.eval_features or "inception"):
        return [MetricsCallback(every=args.eval_every, n=args.eval_n, features=args.eval_features or "inception",
                                real=data.images if data.dataset is None else lambda: data.real_images(2 * args.eval_n),
                                source=data.source or None)]


def attach_evaluators(trainer: GANTrainer, found: list[Any], args: argparse.Namespace, data: TrainingData) -> None:
    """Attach :func:`evaluators`' callbacks (an extractor that cannot be had is one line naming ``--eval-features``)."""
    if _mnist_scored(args, data):
        for evaluator in found:
            evaluator.attach(trainer)
        return
    with about_option("--eval-features", args.eval_features or "inception"):
        for evaluator in found:
            evaluator.attach(trainer)


def class_grid_prefix(args: argparse.Namespace) -> str:
    """The file names of a conditional run's one-row-per-class grid: MNIST's ``digits_*``, else ``classes_*``."""
    return "digits" if args.data == "mnist" else "classes"


def attach_reports(trainer: GANTrainer, args: argparse.Namespace, out: Path, num_classes: int | None) -> None:
    """History (CSV, JSONL), the loss plot, the sample grids, TensorBoard, the progress bar and epoch log.

    The grids are drawn from noise banks seeded by ``--seed`` alone, so a resumed run draws
    the same ones; a conditional run also writes a grid with one row per class (the first
    :data:`MAX_GRID_CLASSES` classes), the same noise in each column: ``digits_*.png`` for
    MNIST, ``classes_*.png`` otherwise.
    """
    reporting.HistoryCSV(out / "history.csv").attach(trainer)
    JSONLHistory(out / "history.jsonl").attach(trainer)
    reporting.LossPlot(out / "losses.png").attach(trainer)
    z64 = reporting.fixed_noise(64, trainer.latent_dim, seed=args.seed)  # (64, latent_dim): one bank for every grid
    y64 = None if num_classes is None else torch.arange(64) % num_classes  # (64,) the classes in turn
    reporting.SampleGrid(out, z64, every=args.sample_every, labels=y64).attach(trainer)
    if num_classes is not None:
        rows = min(num_classes, MAX_GRID_CLASSES)
        z10 = reporting.fixed_noise(10, trainer.latent_dim, seed=args.seed + 1).repeat(rows, 1)  # (rows * 10, d)
        reporting.SampleGrid(out, z10, every=args.sample_every, nrow=10, labels=digit_grid_labels(rows, 10),
                             prefix=class_grid_prefix(args)).attach(trainer)
    if args.logger == "tensorboard":
        try:
            TensorBoardLogger(out / "tensorboard", z=z64, labels=y64, image_every=args.sample_every).attach(trainer)
        except ModuleNotFoundError as err:
            raise CLIError(f"--logger tensorboard: {err}") from None
    if not args.no_progress:
        progress.ProgressBar().attach(trainer)
    progress.EpochLogger().attach(trainer)


def epoch_words(trainer: GANTrainer) -> str:
    """Where the run stands, the same way everywhere: completed epochs, or "epoch k of N" under way."""
    st = trainer.state
    if st.epoch_step:
        return f"in epoch {st.epoch + 1} of {st.max_epochs} ({st.epoch} completed), step {st.step}"
    return f"{st.epoch} of {st.max_epochs} epochs completed, step {st.step}"


def write_failure(err: BaseException, out: Path, checkpoint: Path) -> str | None:
    """A one-line message for a failure to write a file (disk full, permissions), else None."""
    frames = {frame.f_code.co_name for frame, _ in traceback.walk_tb(err.__traceback__)}
    saving = "save_checkpoint" in frames
    if isinstance(err, OSError):
        where = err.filename or (checkpoint if saving else out)
        if err.filename is not None and err.errno == errno.ENOSPC:  # the library's message: bytes and free space
            return str(err).strip().splitlines()[0]
        cause = "no space left on device" if err.errno == errno.ENOSPC else (err.strerror or str(err))
        return f"cannot write {where}: {cause}"
    if saving and isinstance(err, RuntimeError):  # torch.save's writer: "[enforce fail ...] unexpected pos"
        try:
            free = f"{shutil.disk_usage(checkpoint.parent).free / 2**20:.0f} MiB free there"
        except OSError:
            free = "free space unknown"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return f"cannot write {checkpoint}: the write failed, most likely the disk is full ({free}; {first})"
    return None


class _TqdmHandler(logging.Handler):
    """Messages to stdout above a live progress bar (``tqdm.write``), looked up at each message."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm.auto import tqdm

            stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
            tqdm.write(self.format(record), file=stream)
            stream.flush()
        except Exception:  # logging must never break the run
            self.handleError(record)


@contextmanager
def console_logging() -> Iterator[None]:
    """Show the library's INFO messages on the console while the command runs (unless its logger has handlers)."""
    root = logging.getLogger(LOGGER_NAME)
    if root.handlers:
        yield
        return
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
