"""One training run of the command line: build the data, the networks, the trainer and its callbacks, train.

:func:`run` takes parsed options (:func:`torchgan_lite.cli.options.parse_args`) and two
seams, so that a test or a script of your own can train through the command's whole
machinery (resume, signals, outputs, ``run.json``) on other data or networks::

    run(args, data=lambda args: TrainingData(images, labels), networks=lambda args, shape, classes: (g, d))

- ``data(args)`` returns a :class:`~torchgan_lite.cli.sources.TrainingData` (images
  ``(N, C, H, W)`` on the CPU, labels for a conditional run); default:
  :func:`~torchgan_lite.cli.sources.default_data` (``--data``);
- ``networks(args, image_shape, num_classes)`` returns ``(generator, discriminator)``;
  default: :func:`~torchgan_lite.cli.sources.build_networks` (``--arch``).

Signals have one path, the trainer's (:mod:`torchgan_lite.training.signals`): inside ``fit``
a first SIGINT or SIGTERM finishes the step under way, the checkpoint is saved and the run
exits with 130 or 143. Before ``fit`` nothing has been trained or written, so Ctrl-C ends
the command at once (exit 130) and SIGTERM keeps its default action (the process ends,
status 143 to its shell).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Subset

from torchgan_lite.callbacks.checkpoint import ModelCheckpoint
from torchgan_lite.callbacks.ema import GeneratorEMA
from torchgan_lite.callbacks.loggers import LOGGER_NAME
from torchgan_lite.callbacks.reporting import run_info, write_json
from torchgan_lite.cli import outputs
from torchgan_lite.cli.common import EXIT_FAILED, CLIError
from torchgan_lite.cli.resume import (
    CHECKPOINT_NAME,
    RunOptions,
    check_resumable,
    resolve_resume,
    resolved_options,
    resume_command,
    saved_options,
)
from torchgan_lite.cli.sources import DataSource, NetworkBuilder, TrainingData, build_networks, default_data
from torchgan_lite.data.stateful import StatefulLoader
from torchgan_lite.data.tensor_loader import TensorLoader
from torchgan_lite.recipes import TrainingParts, build_parts
from torchgan_lite.training.events import Event
from torchgan_lite.training.state import NonFiniteLossError
from torchgan_lite.training.trainer import GANTrainer
from torchgan_lite.utils.runtime import retain_freed_memory, seed_everything

__all__ = ["exit_status", "run"]

log = logging.getLogger(f"{LOGGER_NAME}.train")

#: Adam's learning rate of both networks in every recipe (recipes.build_parts' default).
_DEFAULT_LR = 2e-4
#: Shells report a process ended by signal N as 128 + N: 130 for SIGINT, 143 for SIGTERM.
_SIGNAL_EXIT = 128


def exit_status(signum: int | None) -> int:
    """The exit status of a run stopped by ``signum``: 130 for SIGINT, 143 for SIGTERM (128 + N)."""
    return _SIGNAL_EXIT + int(signum if signum is not None else signal.SIGINT)


# --------------------------------------------------------------------------- building the run


def _build_trainer(generator: nn.Module, discriminator: nn.Module, parts: TrainingParts,
                   args: argparse.Namespace) -> GANTrainer:
    """The run's trainer: the recipe's parts, with ``--amp`` and ``--compile`` (the one place it is built)."""
    step = parts.step_config(amp=None if args.amp == "none" else args.amp,
                             implementation="compiled" if args.compile else "eager")
    return GANTrainer(generator, discriminator, parts.loss, g_optimizer=parts.g_optimizer,
                      d_optimizer=parts.d_optimizer, device=args.device, step=step)


def _with_ema_decay(found: list[Any], decay: float | None) -> list[Any]:
    """The recipe's callbacks, with its generator EMA replaced by ``--ema-decay`` when given (0: none)."""
    if decay is None:
        return list(found)
    kept = [c for c in found if not isinstance(c, GeneratorEMA)]
    warmup = next((c.warmup_steps for c in found if isinstance(c, GeneratorEMA)), 0)
    return kept + ([GeneratorEMA(decay=decay, warmup_steps=warmup)] if decay > 0 else [])


def _subset(args: argparse.Namespace, data: TrainingData) -> TrainingData:
    """``--subset``: the first N images; and the labels a ``--conditional`` run needs, or why they are missing."""
    if args.conditional and data.labels is None:
        raise CLIError(f"--conditional trains on (image, label) pairs, but {data.source or 'this data'} has no labels "
                       "(a folder needs one sub-folder of images per class)")
    if args.subset is None:
        return data
    n = len(data)
    if args.subset > n:
        raise CLIError(f"--subset {args.subset} is more than the {n:,} training images (leave it out to train on all)")
    labels = None if data.labels is None else data.labels[: args.subset]
    if data.dataset is not None:
        return TrainingData(data.images, labels, data.classes, data.source, Subset(data.dataset, range(args.subset)))
    return TrainingData(data.images[: args.subset], labels, data.classes, data.source)


def _loader(args: argparse.Namespace, trainer: GANTrainer, data: TrainingData) -> TensorLoader | StatefulLoader:
    """The training data, moved once onto the training device (or, ``--stream``, decoded batch by batch by
    ``--workers`` processes); one shuffle an epoch, full batches only; either way its position is saved."""
    no_batch = CLIError(f"--subset {args.subset} leaves {len(data)} training images, fewer than one batch "
                        f"(--batch-size {args.batch_size}{' x processes' if trainer.world_size > 1 else ''}): use a "
                        "larger --subset or a smaller --batch-size")
    if data.dataset is not None:
        if len(data) < args.batch_size * trainer.world_size:
            raise no_batch
        return StatefulLoader(data.dataset, batch_size=args.batch_size, shuffle=True, drop_last=True,
                              hflip=args.hflip, num_workers=args.workers, device=trainer.device)
    images = data.images.to(trainer.device)  # (N, C, H, W)
    tensors = (images, data.labels.to(trainer.device)) if args.conditional and data.labels is not None else (images,)
    try:
        loader = TensorLoader(*tensors, batch_size=args.batch_size, shuffle=True, drop_last=True, hflip=args.hflip)
    except ValueError:
        raise no_batch from None
    if len(loader) == 0:
        raise no_batch
    return loader


def _check_out_dir(out: Path) -> None:
    """Create ``out`` and make sure files can be written there (an ``OSError`` names it and the cause)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise CLIError(f"--out {out}: cannot write there ({err.strerror or err})") from None


# --------------------------------------------------------------------------- the run


def run(args: argparse.Namespace, argv: Sequence[str] = (), command: Sequence[str] | None = None, *,
        data: DataSource | None = None, networks: NetworkBuilder | None = None) -> int:
    """Train as the options say; returns the exit status (a mistake raises :class:`CLIError`).

    Args:
        args: Parsed options.
        argv: The command line they came from, for the printed resume command.
        command: How the program was started (default: the running interpreter and script).
        data: The training data (default: :func:`~torchgan_lite.cli.sources.default_data`, ``--data``).
        networks: The networks (default: :func:`~torchgan_lite.cli.sources.build_networks`, ``--arch``).

    Returns:
        0 done; 130/143 stopped by SIGINT/SIGTERM (a checkpoint saved when it could be).

    Raises:
        CLIError: a mistake (status 2) or a failure while training (status 1), in one line.
    """
    try:
        return _run(args, list(argv), command, data or default_data, networks or build_networks)
    except KeyboardInterrupt:  # before fit started (fit's own interruptions are handled in _run)
        print("\ninterrupted before training started; nothing was saved", file=sys.stderr, flush=True)
        return exit_status(signal.SIGINT)


def _run(args: argparse.Namespace, argv: list[str], command: Sequence[str] | None, data: DataSource,
         networks: NetworkBuilder) -> int:
    started = time.perf_counter()
    out: Path = args.out
    _check_out_dir(out)
    resume = resolve_resume(args.resume, out)
    saved = None if resume is None else saved_options(*resume)
    lr = args.lr if args.lr is not None else (saved["lr"] if saved else _DEFAULT_LR)
    training = _subset(args, data(args))  # decoded once, on the CPU; draws nothing from torch's RNG
    classes = training.num_classes if args.conditional else None
    evaluators = outputs.evaluators(args, training, classes)  # before training, so a mistake costs no epoch

    seed_everything(args.seed)  # before building the networks, so the initial weights are the same every run
    retain_freed_memory()  # glibc keeps freed memory for the next step (the CLI owns the process)
    generator, discriminator = networks(args, training.image_shape, classes)
    parts = build_parts(args.recipe, generator, discriminator, loss=args.loss, lr=lr, n_critic=args.n_critic,
                        batch_size=args.batch_size)
    trainer = _build_trainer(generator, discriminator, parts, args)
    if resume is None and args.resume == "auto" and trainer.is_main_process:
        log.info("no checkpoint in %s: starting afresh", out)
    options = resolved_options(args, lr, trainer.world_size, training)
    if resume is not None:
        assert saved is not None
        check_resumable(saved, options, resume[0], resume[1])
    trainer.register_state(RunOptions.state_name, RunOptions(options))
    for callback in _with_ema_decay(parts.callbacks, args.ema_decay):  # before any resume: it restores their state
        callback.attach(trainer)
    loader = _loader(args, trainer, training)  # after the trainer: it shards by rank under torchrun

    # Order matters at each epoch end: metrics first, then the files that show them, the checkpoint last,
    # then run.json (which names the checkpoint's step).
    outputs.attach_evaluators(trainer, evaluators, args, training)
    outputs.attach_reports(trainer, args, out, classes)
    checkpoint = ModelCheckpoint(out / CHECKPOINT_NAME, every=args.checkpoint_every)
    checkpoint.attach(trainer)

    def write_run_json(status: str, **more: Any) -> None:
        if not trainer.is_main_process:
            return
        info = run_info(trainer, {**vars(args), "resolved": options}, time.perf_counter() - started, status)
        info.update({"epochs": trainer.state.max_epochs or args.epochs, "epoch_step": trainer.state.epoch_step,
                     "lr": _learning_rates(trainer), "checkpoint": str(checkpoint.path),
                     "checkpoint_step": checkpoint.last_saved_step, "world_size": trainer.world_size, **more})
        try:
            write_json(out / "run.json", info)
        except OSError as err:  # a full disk must not hide the real outcome
            log.warning("warning: could not write %s: %s", out / "run.json", err.strerror or err)

    trainer.add_callback(Event.EPOCH_END, lambda t: write_run_json("running"))

    if resume is not None:
        path, ckpt = resume
        explicit_lr = args.lr is not None
        try:
            # Weights, optimizers, step, history, data order, RNGs. The trainer refuses another loss, n_critic,
            # amp or global batch, and other optimizer hyper-parameters unless --lr asks for this run's ("current").
            trainer.load_state_dict(ckpt, str(path), data=loader, hyperparameters="current" if explicit_lr else "check")
        except ValueError as err:
            raise CLIError(f"cannot resume: {err}") from None
        trainer.state.max_epochs = args.epochs
        if trainer.is_main_process:
            log.info("resumed from %s: %s", path, outputs.epoch_words(trainer))
        if explicit_lr and saved and saved.get("lr") != lr:
            log.info("learning rate %g (--lr), was %g in the checkpoint", lr, saved.get("lr"))
        if _finished(trainer, args):
            # A scheduler rerunning the command of a finished run: nothing to train, and no warning to read.
            write_run_json("completed")
            if trainer.is_main_process:
                log.info("nothing to train: the checkpoint has reached --epochs %d%s already", args.epochs,
                         f" or --max-steps {args.max_steps}" if args.max_steps is not None else "")
            return 0

    if trainer.is_main_process:
        limit = f", stopping at step {args.max_steps}" if args.max_steps is not None else ""
        kind = {"mlp": "MLP GAN", "dcgan": "DCGAN", "resnet": "ResNet GAN"}.get(args.arch, f"{args.arch} GAN")
        processes = f" x {trainer.world_size} processes" if trainer.world_size > 1 else ""
        c, h, w = training.image_shape
        log.info("training the %s%s on %s%s: %d epochs of %d steps%s, loss %s, recipe %s, lr %g, outputs in %s/; "
                 "%dx%dx%d images from %s", "conditional " if args.conditional else "", kind, trainer.device,
                 processes, args.epochs, len(loader), limit, args.loss, args.recipe, lr, out, c, h, w,
                 training.source or "the data given")
    write_run_json("running")
    try:
        trainer.fit(loader, epochs=args.epochs, max_steps=args.max_steps)
    except KeyboardInterrupt as err:  # TrainingInterrupted (a signal, at a step boundary) or a second Ctrl-C
        return _interrupted(trainer, checkpoint, getattr(err, "signal", None) or signal.SIGINT, argv, command,
                            write_run_json)
    except Exception as err:
        message = outputs.write_failure(err, out, checkpoint.path)
        if message is None and isinstance(err, (NonFiniteLossError, ValueError, TypeError)):
            message = f"{type(err).__name__}: {err}"
        write_run_json("failed", error=message or f"{type(err).__name__}: {err}")
        if message is None:
            raise  # a bug: its traceback is the useful report
        kept = f"; the last checkpoint, {checkpoint.path}, is intact" if checkpoint.path.exists() else ""
        raise CLIError(f"{message} ({outputs.epoch_words(trainer)}){kept}", status=EXIT_FAILED) from None
    write_run_json("completed")
    st = trainer.state
    why = (f" (--max-steps {args.max_steps} reached in epoch {st.epoch + 1} of {st.max_epochs})"
           if st.epoch_step and args.max_steps is not None and st.step >= args.max_steps else "")
    final = f"{outputs.class_grid_prefix(args)}_final.png" if args.conditional else "samples_final.png"
    if trainer.is_main_process:
        log.info("done: %d of %d epochs completed, step %d%s in %.0f s; samples in %s, losses in %s", st.epoch,
                 st.max_epochs, st.step, why, time.perf_counter() - started, out / final, out / "losses.png")
    return 0


def _finished(trainer: GANTrainer, args: argparse.Namespace) -> bool:
    st = trainer.state
    return st.epoch >= args.epochs or (args.max_steps is not None and st.step >= args.max_steps)


def _learning_rates(trainer: GANTrainer) -> dict[str, float]:
    step = trainer.gan_step
    return {"generator": float(step.g_optimizer.param_groups[0]["lr"]),
            "discriminator": float(step.d_optimizer.param_groups[0]["lr"])}


def _interrupted(trainer: GANTrainer, checkpoint: ModelCheckpoint, signum: int, argv: list[str],
                 command: Sequence[str] | None, write_run_json: Callable[..., None]) -> int:
    """Report a run stopped by a signal; the exit status says which (130 SIGINT, 143 SIGTERM)."""
    name = signal.Signals(signum).name
    write_run_json("interrupted", signal=name)
    if trainer.is_main_process:
        st = trainer.state
        where = (outputs.epoch_words(trainer) if st.epoch_step else
                 f"after epoch {st.epoch} of {st.max_epochs} ({st.epoch} completed), step {st.step}")
        print(f"\n{name}: stopped {where}.", file=sys.stderr, flush=True)
        if checkpoint.last_saved_step == trainer.state.step:
            print(f"Checkpoint saved to {checkpoint.path}. Resume with:\n  "
                  f"{resume_command(argv, checkpoint.path, command)}", file=sys.stderr, flush=True)
        else:
            print("No checkpoint of this step was saved (stopped inside a step).", file=sys.stderr, flush=True)
    return exit_status(signum)
