"""The training command line: ``torchgan-lite-train`` / ``python -m torchgan_lite.train``.

One option set for every MNIST run of the package: the reference MLP GAN
(``examples/mnist_mlp.py`` is this with its defaults), the class-conditional GAN
(``--conditional``; ``examples/mnist_conditional.py``), DCGAN networks (``--arch dcgan``),
the losses and recipes of docs/recipes.md.

    torchgan-lite-train --epochs 3                           # a short look at the reference recipe
    torchgan-lite-train --max-steps 50 --out /tmp/smoke      # a smoke run
    torchgan-lite-train --resume auto                        # carry on from the newest checkpoint in --out
    torchgan-lite-train --conditional --recipe improved      # ask for a digit, get that digit
    torchgan-lite-train --logger tensorboard                 # event files in --out/tensorboard

Operations (docs/quickstart.md): Ctrl-C (SIGINT) and ``kill``/``timeout``/Slurm/``docker stop``
(SIGTERM) finish the step under way, save ``checkpoint.pt``, write ``run.json`` and exit
with 130 (SIGINT) or 143 (SIGTERM), printing the command that resumes. ``--resume auto``
makes the same command line safe to rerun after a preemption: it continues from the
newest valid checkpoint in ``--out``, or starts afresh when there is none. A checkpoint
records the options it was trained with; resuming with other ones is refused before any
training, naming each option that differs (``--lr`` may differ: it changes the learning
rate on resume). A mistake on the command line ends in one ``error:`` line and exit 2; a
failure while training (e.g. a full disk) in one ``error:`` line and exit 1.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import re
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import torch

from torchgan_lite.callbacks import progress as callbacks
from torchgan_lite.callbacks import reporting
from torchgan_lite.callbacks.checkpoint import ModelCheckpoint
from torchgan_lite.callbacks.loggers import LOGGER_NAME, JSONLHistory, TensorBoardLogger
from torchgan_lite.data import mnist as data
from torchgan_lite.data import tensor_loader
from torchgan_lite.recipes import LOSSES, RECIPES, build_parts, make_loss
from torchgan_lite.training.events import Event, RemovableHandle
from torchgan_lite.training.state import NonFiniteLossError
from torchgan_lite.training.trainer import GANTrainer
from torchgan_lite.utils.checks import non_negative_int, positive_float, positive_int
from torchgan_lite.utils.runtime import seed_everything

__all__ = [
    "CONDITIONAL",
    "EXIT_FAILED",
    "EXIT_USAGE",
    "REFERENCE",
    "CLIDefaults",
    "build_parser",
    "exit_status",
    "find_checkpoint",
    "load_mnist",
    "main",
    "parse_args",
    "resume_command"
]

log = logging.getLogger(f"{LOGGER_NAME}.train")

NUM_CLASSES = 10
#: Exit status of a command-line mistake (argparse's own).
EXIT_USAGE = 2
#: Exit status of a run that failed while training (a full disk, a NaN loss...).
EXIT_FAILED = 1
#: Shells report a process ended by signal N as 128 + N: 130 for SIGINT, 143 for SIGTERM.
_SIGNAL_EXIT = 128

#: Adam's learning rate of both networks in every recipe (recipes.build_parts' default).
_DEFAULT_LR = 2e-4


@dataclass(frozen=True)
class CLIDefaults:
    """The defaults a script gives the shared options (the examples differ only in these)."""

    prog: str | None = None  # None: argparse's (the script's file name)
    description: str = "Train a GAN on MNIST with torchgan_lite (the reference recipe's settings are the defaults)."
    conditional: bool = False
    epochs: int = 200  # the reference recipe's length
    recipe: str = "reference"
    out: str = "runs/mnist_mlp"


#: ``examples/mnist_mlp.py`` and ``torchgan-lite-train``: the reference recipe, 200 epochs.
REFERENCE = CLIDefaults()
#: ``examples/mnist_conditional.py``: the conditional GAN, the improved recipe, 30 epochs.
CONDITIONAL = CLIDefaults(
    description="Train a class-conditional GAN on MNIST: ask for a digit, get that digit.",
    conditional=True, epochs=30, recipe="improved", out="runs/mnist_conditional")


class CLIError(Exception):
    """A mistake or a failure that ends the command with one ``error:`` line (not a traceback)."""

    def __init__(self, message: str, status: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """argparse, with its mistakes reported as one ``error:`` line (usage is on ``--help``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {message} (see {self.prog} --help)\n")


# --------------------------------------------------------------------------- options


def build_parser(defaults: CLIDefaults = REFERENCE) -> argparse.ArgumentParser:
    """The shared option set, with ``defaults`` filled in."""
    p = _Parser(
        prog=defaults.prog or _program_name(), description=defaults.description,
        epilog="Outputs in --out: samples_epoch_NNN.png and samples_final.png (8x8 grids from one fixed noise "
               "bank; conditional runs add digits_*.png, row d = digit d), losses.png, history.csv, "
               "history.jsonl, checkpoint.pt, run.json, and tensorboard/ with --logger tensorboard. "
               "Ctrl-C or SIGTERM saves a checkpoint and prints the command that resumes it.")
    model = p.add_argument_group("model and recipe")
    model.add_argument("--conditional", action=argparse.BooleanOptionalAction, default=defaults.conditional,
                       help="class-conditional networks trained on (image, label) batches "
                            "(default: %(default)s)")
    model.add_argument("--arch", choices=("mlp", "dcgan"), default="mlp",
                       help="mlp: the reference recipe's networks; dcgan: torchgan_lite.dcgan's 28x28 "
                            "convolutional networks, slower on a CPU (default: %(default)s)")
    model.add_argument("--norm", choices=("batch", "spectral", "none"), default="batch",
                       help="normalisation of the dcgan networks (default: %(default)s)")
    model.add_argument("--recipe", choices=tuple(RECIPES), default=defaults.recipe,
                       help="; ".join(f"{name}: {text}" for name, text in RECIPES.items())
                       + "; measured in docs/recipes.md (default: %(default)s)")
    model.add_argument("--loss", choices=LOSSES, default="nonsaturating",
                       help="GAN loss; wgan-gp is WassersteinLoss + GradientPenalty(10) with 5 critic steps "
                            "(default: %(default)s)")
    model.add_argument("--n-critic", type=positive_int, default=None, metavar="K",
                       help="discriminator steps per generator step (default: 5 for wgan-gp, else 1)")
    model.add_argument("--lr", type=positive_float, default=None, metavar="LR",
                       help="Adam learning rate of both networks (default: the recipe's, 2e-4; on --resume, the "
                            "checkpoint's; giving it on --resume changes the learning rate from there on)")
    model.add_argument("--ema-decay", type=float, default=None, metavar="D",
                       help="generator EMA decay in [0, 1), 0 turns it off (default: the recipe's)")

    run = p.add_argument_group("length and data")
    run.add_argument("--epochs", type=positive_int, default=defaults.epochs, metavar="N",
                     help="total epochs, counting those of a resumed run (default: %(default)s)")
    run.add_argument("--max-steps", type=positive_int, default=None, metavar="N",
                     help="stop at this total step count, e.g. for a smoke run (default: no limit)")
    run.add_argument("--batch-size", type=positive_int, default=128, metavar="B",
                     help="images per batch and process (under torchrun the global batch is B x processes); "
                          "128 gives 468 batches an epoch (default: %(default)s)")
    run.add_argument("--subset", type=positive_int, default=None, metavar="N",
                     help="train on the first N of the 60,000 images, for quick tests (default: all)")
    run.add_argument("--data-root", type=Path, default=None, metavar="DIR",
                     help="folder holding MNIST/raw/ (default: $TORCHGAN_LITE_DATA, else a download into "
                          "the user cache folder, ~/.cache/torchgan_lite)")
    run.add_argument("--seed", type=int, default=0, metavar="S",
                     help="seeds the weights, noise, data order and the sample grids' noise (default: %(default)s)")

    dev = p.add_argument_group("device and speed")
    dev.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                     help="auto: CUDA when present, else the CPU (default: %(default)s)")
    dev.add_argument("--amp", choices=("none", "bf16"), default="none",
                     help="bf16 autocast for the forward passes (default: %(default)s)")
    dev.add_argument("--compile", action="store_true",
                     help="torch.compile both networks; the first steps are slow while it compiles (default: off)")

    out = p.add_argument_group("outputs and resuming")
    out.add_argument("--out", type=Path, default=Path(defaults.out), metavar="DIR",
                     help="output folder (default: %(default)s)")
    out.add_argument("--resume", default=None, metavar="auto|latest|PATH",
                     help="auto: continue from the newest valid checkpoint in --out, or start afresh when there is "
                          "none (safe to rerun after a preemption); latest: the same, but an error when there is "
                          "none; PATH: that checkpoint file. The options must match the checkpoint's "
                          "(default: start afresh)")
    out.add_argument("--sample-every", type=positive_int, default=5, metavar="N",
                     help="epochs between samples_epoch_NNN.png grids (default: %(default)s)")
    out.add_argument("--checkpoint-every", type=positive_int, default=1, metavar="N",
                     help="epochs between checkpoint.pt saves (default: %(default)s)")
    out.add_argument("--logger", choices=("none", "tensorboard"), default="none",
                     help="tensorboard: event files in --out/tensorboard (needs pip install "
                          "'torchgan_lite[tensorboard]') (default: %(default)s)")
    out.add_argument("--no-progress", action="store_true", help="no progress bar (e.g. in batch jobs)")
    out.add_argument("--eval-every", type=non_negative_int, default=0, metavar="N",
                     help="epochs between sample-quality metrics (FD, KID...; conditional runs add class "
                          "accuracy) (default: 0, off)")
    out.add_argument("--eval-n", type=positive_int, default=10000, metavar="N",
                     help="samples per quality evaluation (default: %(default)s)")
    return p


def parse_args(argv: Sequence[str] | None = None, defaults: CLIDefaults = REFERENCE) -> argparse.Namespace:
    """Parse and check the options; a mistake exits with one ``error:`` line and status 2."""
    p = build_parser(defaults)
    args = p.parse_args(argv)
    if args.ema_decay is not None and not 0 <= args.ema_decay < 1:
        p.error(f"--ema-decay must be in [0, 1) (0 turns the EMA off), got {args.ema_decay}")
    if args.conditional and args.eval_every and args.eval_n < NUM_CLASSES:
        p.error(f"--eval-n must be >= {NUM_CLASSES} for a conditional run (one sample per digit), got {args.eval_n}")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda, but CUDA is not available here (use --device auto or cpu)")
    if args.norm != "batch" and args.arch != "dcgan":
        p.error(f"--norm {args.norm} applies to --arch dcgan only (this run builds --arch {args.arch})")
    return args


# --------------------------------------------------------------------------- the run's options, in its checkpoint

#: The options a checkpoint must have been trained with to be resumed (flag, args attribute).
_MATCHED = (("--conditional", "conditional"), ("--arch", "arch"), ("--norm", "norm"), ("--recipe", "recipe"),
            ("--loss", "loss"), ("--n-critic", "n_critic"), ("--ema-decay", "ema_decay"),
            ("--batch-size", "batch_size"), ("--subset", "subset"), ("--amp", "amp"))


class RunOptions:
    """The options that shaped a run (resolved: n_critic, EMA decay, lr), saved in its checkpoint.

    Registered with ``trainer.register_state("cli_options", ...)``. :func:`check_resumable`
    compares a checkpoint's copy with this run's before anything is loaded.
    """

    state_name = "cli_options"

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = dict(options)

    def state_dict(self) -> dict[str, Any]:
        return dict(self.options)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.saved = dict(state)  # the check ran before the load (check_resumable)


def _resolved_options(args: argparse.Namespace, lr: float) -> dict[str, Any]:
    return {"conditional": args.conditional, "arch": args.arch, "norm": args.norm if args.arch == "dcgan" else None,
            "recipe": args.recipe, "loss": args.loss, "n_critic": args.n_critic or make_loss(args.loss)[2],
            "ema_decay": args.ema_decay, "batch_size": args.batch_size, "subset": args.subset, "amp": args.amp,
            "lr": lr}


def check_resumable(saved: dict[str, Any], current: dict[str, Any], source: Path) -> None:
    """Raise :class:`CLIError` naming every option whose value differs from the checkpoint's."""
    differ = [f"{flag} {saved.get(key)!r} (this command: {current[key]!r})"
              for flag, key in _MATCHED if saved.get(key) != current[key]]
    if differ:
        raise CLIError(f"cannot resume from {source}: it was trained with other options: {'; '.join(differ)}. "
                       "Rerun with the checkpoint's options (--lr alone may differ: it sets a new learning rate), "
                       "or start afresh in another --out")


# --------------------------------------------------------------------------- resuming


def _checkpoint_candidates(folder: Path) -> list[Path]:
    """``checkpoint.pt`` and its kept copies ``checkpoint.pt.N`` in ``folder``."""
    pattern = re.compile(r"checkpoint\.pt(\.\d+)?")
    try:
        return [p for p in folder.iterdir() if pattern.fullmatch(p.name) and p.is_file()]
    except OSError:
        return []


def find_checkpoint(folder: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]] | None:
    """The newest valid checkpoint in ``folder``: the most steps, then the newest file; None if there is none.

    A damaged candidate (a torn copy, a foreign file) is skipped with a warning.

    Returns:
        ``(path, checkpoint)``, the checkpoint as :func:`torchgan_lite.checkpoints.format.load_checkpoint` read it.
    """
    from torchgan_lite.checkpoints.format import load_checkpoint

    best: tuple[tuple[int, float], Path, dict[str, Any]] | None = None
    for path in _checkpoint_candidates(Path(folder)):
        try:
            ckpt = load_checkpoint(path)
            step = int(ckpt["trainer"]["step"])
        except (ValueError, KeyError, TypeError, OSError) as err:
            log.warning("skipping %s: %s", path, err)
            continue
        key = (step, path.stat().st_mtime)
        if best is None or key > best[0]:
            best = (key, path, ckpt)
    return None if best is None else (best[1], best[2])


def _resolve_resume(args: argparse.Namespace) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint ``--resume`` names, read and checked; None for a fresh start."""
    from torchgan_lite.checkpoints.format import load_checkpoint

    if args.resume is None:
        return None
    if args.resume in ("auto", "latest"):
        found = find_checkpoint(args.out)
        if found is None and args.resume == "latest":
            raise CLIError(f"--resume latest: no valid checkpoint in {args.out} (--resume auto starts afresh then)")
        if found is None:
            log.info("no checkpoint in %s: starting afresh", args.out)
        return found
    path = Path(args.resume)
    if path.is_dir():
        found = find_checkpoint(path)
        hint = f"; the newest there is {found[0]}" if found is not None else ""
        raise CLIError(f"--resume {path} is a folder, not a checkpoint file{hint} (--resume auto picks the newest "
                       "checkpoint in --out)")
    if not path.exists():
        raise CLIError(f"--resume {path}: no such file")
    try:
        return path, load_checkpoint(path)
    except (ValueError, OSError) as err:
        raise CLIError(f"--resume {path}: {err}") from None


def resume_command(argv: Sequence[str], checkpoint: str | os.PathLike[str],
                   command: Sequence[str] | None = None) -> str:
    """This run's command line with ``--resume checkpoint`` in place of any earlier ``--resume``.

    Args:
        argv: The options of this run (``sys.argv[1:]``).
        checkpoint: The checkpoint to resume.
        command: How this program was started; default: the interpreter that runs
            (``sys.executable``) and the script's absolute path, or ``-m torchgan_lite.train``.
    """
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip or arg.startswith("--resume="):
            skip = False
            continue
        if arg == "--resume":
            skip = True
            continue
        kept.append(arg)
    return shlex.join([*(command if command is not None else _invocation()), *kept, "--resume", str(checkpoint)])


def _program_name() -> str:
    """``--help``'s name for this program: ``python -m torchgan_lite.train`` or the script's file name."""
    command = _invocation()
    return "python " + " ".join(command[1:]) if command[1] == "-m" else os.path.basename(command[1])


def _invocation() -> list[str]:
    main_module = sys.modules.get("__main__")
    spec = getattr(main_module, "__spec__", None)
    if spec is not None and getattr(spec, "name", None):  # python -m package.module
        return [sys.executable, "-m", spec.name]
    return [sys.executable, os.path.abspath(sys.argv[0])]


# --------------------------------------------------------------------------- data and outputs


def load_mnist(data_root: Path | None, conditional: bool,
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """MNIST's training set on ``device``: images ``(60000, 1, 28, 28)`` in [-1, 1], and labels ``(60000,)``."""
    if conditional:
        images, labels = data.mnist_with_labels(data_root, device=device)
        return images, labels
    return data.mnist(data_root, device=device), None


def _check_out_dir(out: Path) -> None:
    """Create ``out`` and make sure files can be written there, or raise CLIError saying why."""
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} is a file, not a folder: give a folder for the run's outputs")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise CLIError(f"--out {out}: cannot write there ({err.strerror or err})") from None


def _write_failure(err: BaseException, out: Path, checkpoint: Path) -> str | None:
    """A one-line message for a failure to write a file (disk full, permissions), else None."""
    frames = {frame.f_code.co_name for frame, _ in traceback.walk_tb(err.__traceback__)}
    saving = "save_checkpoint" in frames
    if isinstance(err, OSError):
        where = err.filename or (checkpoint if saving else out)
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


def _epoch_words(trainer: GANTrainer) -> str:
    """Where the run stands, the same way everywhere: completed epochs, or "epoch k of N" under way."""
    st = trainer.state
    if st.epoch_step:
        return f"in epoch {st.epoch + 1} of {st.max_epochs} ({st.epoch} completed), step {st.step}"
    return f"{st.epoch} of {st.max_epochs} epochs completed, step {st.step}"


class _SignalStop:
    """SIGTERM (and SIGINT before ``fit`` runs) as a request to stop at the next step boundary.

    Inside ``fit`` the trainer handles the signals itself where it can (it raises
    ``TrainingInterrupted``); this handler covers the rest of the command: it remembers
    the signal and calls ``trainer.terminate()``, so ``fit`` ends after the step under way.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.trainer: GANTrainer | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        if self.signum is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.signum = signum
        if self.trainer is not None:
            self.trainer.terminate()
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt

    @contextmanager
    def installed(self) -> Iterator[_SignalStop]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, self)
        try:
            yield self
        finally:
            signal.signal(signal.SIGTERM, previous)


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
def _console_logging() -> Iterator[None]:
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


# --------------------------------------------------------------------------- conditional reports


class DigitGrid:
    """A grid from a fixed noise bank *and* fixed labels, every ``every`` epochs and at the end of ``fit``.

    Args:
        out_dir: Folder of the PNGs.
        prefix: File names ``{prefix}_epoch_NNN.png`` and ``{prefix}_final.png``.
        z: Noise ``(n, latent_dim)``.
        labels: Classes ``(n,)`` int64.
        nrow: Images per row.
        every: Epochs between grids.
    """

    def __init__(self, out_dir: Path, prefix: str, z: torch.Tensor, labels: torch.Tensor, nrow: int,
                 every: int) -> None:
        if z.shape[0] != labels.shape[0]:
            raise ValueError(f"z has {z.shape[0]} rows but labels has {labels.shape[0]}")
        self.out_dir, self.prefix, self.z, self.labels, self.nrow, self.every = out_dir, prefix, z, labels, nrow, every

    def attach(self, trainer: GANTrainer) -> list[RemovableHandle]:
        return [trainer.add_callback(Event.EPOCH_END, self._epoch, every=self.every),
                trainer.add_callback(Event.FIT_END, self._final)]

    def save(self, trainer: GANTrainer, name: str) -> Path:
        images = trainer.sample(self.z.shape[0], z=self.z, labels=self.labels)  # (n, 1, 28, 28)
        return reporting.save_grid(images, self.out_dir / name, nrow=self.nrow)

    def _epoch(self, trainer: GANTrainer) -> None:
        if trainer.is_main_process:
            self.save(trainer, f"{self.prefix}_epoch_{trainer.state.epoch:03d}.png")

    def _final(self, trainer: GANTrainer) -> None:
        if trainer.is_main_process:
            self.save(trainer, f"{self.prefix}_final.png")


class ClassAccuracy:
    """Every ``every`` epochs: the fraction of samples of digit d that the metrics classifier calls d.

    Writes ``class_accuracy``, ``min_class_accuracy`` and ``class_accuracy_<d>`` for each digit
    into ``trainer.state.metrics`` (:func:`~torchgan_lite.metrics.classes.generator_class_accuracy`, noise seed 1234).
    """

    def __init__(self, every: int, per_class: int) -> None:
        from torchgan_lite.metrics.classifier import load_classifier

        self.every, self.per_class = every, per_class
        self._load = load_classifier
        self.last: dict[str, float] = {}

    def attach(self, trainer: GANTrainer) -> list[RemovableHandle]:
        return [trainer.add_callback(Event.EPOCH_END, self._evaluate, every=self.every)]

    def _evaluate(self, trainer: GANTrainer) -> None:
        from torchgan_lite.metrics.classes import generator_class_accuracy

        self.last = generator_class_accuracy(
            lambda z, y: trainer.sample(y.shape[0], z=z, labels=y), trainer.latent_dim, self._load(trainer.device),
            NUM_CLASSES, self.per_class, seed=1234, batch_size=500, device=trainer.device)
        trainer.state.metrics["class_accuracy"] = self.last["accuracy"]
        trainer.state.metrics["min_class_accuracy"] = self.last["min_class_accuracy"]
        for c in range(NUM_CLASSES):  # per digit, so that history.csv shows which digits lag
            trainer.state.metrics[f"class_accuracy_{c}"] = self.last[f"accuracy_{c}"]


def _evaluators(args: argparse.Namespace) -> list[Any]:
    """The quality-metric callbacks of ``--eval-every`` (imported only when asked for)."""
    if args.eval_every == 0:
        return []
    try:
        from torchgan_lite.callbacks.metrics import MetricsCallback

        found: list[Any] = [MetricsCallback(every=args.eval_every, n=args.eval_n, data_root=args.data_root)]
        if args.conditional:
            found.append(ClassAccuracy(args.eval_every, args.eval_n // NUM_CLASSES))
    except ImportError as err:
        raise CLIError(f"--eval-every needs torchgan_lite.metrics, which cannot be imported here ({err})") from None
    return found


# --------------------------------------------------------------------------- building the run


def _networks(args: argparse.Namespace) -> tuple[torch.nn.Module, torch.nn.Module]:
    if args.arch == "dcgan":
        from torchgan_lite.nets.dcgan import dcgan_discriminator, dcgan_generator

        norm = None if args.norm == "none" else args.norm
        classes = NUM_CLASSES if args.conditional else None
        return (dcgan_generator(norm=norm, num_classes=classes), dcgan_discriminator(norm=norm, num_classes=classes))
    if args.conditional:
        from torchgan_lite.nets.conditional import conditional_mlp_discriminator, conditional_mlp_generator

        return conditional_mlp_generator(NUM_CLASSES), conditional_mlp_discriminator(NUM_CLASSES)
    from torchgan_lite.nets.mlp import mlp_discriminator, mlp_generator

    # The recipe's networks: G 100-256-512-1024-784 (Tanh), D 784-1024-512-256-1 (a logit; the sigmoid is in the loss).
    return mlp_generator(), mlp_discriminator()


def _with_ema_decay(found: list[Any], decay: float | None) -> list[Any]:
    """The recipe's callbacks, with its generator EMA replaced by ``--ema-decay`` when given (0: none)."""
    from torchgan_lite.callbacks.ema import GeneratorEMA

    if decay is None:
        return list(found)
    kept = [c for c in found if not isinstance(c, GeneratorEMA)]
    warmup = next((c.warmup_steps for c in found if isinstance(c, GeneratorEMA)), 0)
    return kept + ([GeneratorEMA(decay=decay, warmup_steps=warmup)] if decay > 0 else [])


def _learning_rates(trainer: GANTrainer) -> dict[str, float]:
    return {"generator": float(trainer.g_optimizer.param_groups[0]["lr"]),
            "discriminator": float(trainer.d_optimizer.param_groups[0]["lr"])}


def exit_status(signum: int | None) -> int:
    """The exit status of a run stopped by ``signum``: 130 for SIGINT, 143 for SIGTERM (128 + N)."""
    return _SIGNAL_EXIT + int(signum if signum is not None else signal.SIGINT)


def main(argv: Sequence[str] | None = None, defaults: CLIDefaults = REFERENCE,
         command: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    Args:
        argv: The options (default ``sys.argv[1:]``).
        defaults: The defaults of the calling script (:data:`REFERENCE`, :data:`CONDITIONAL`).
        command: How the program was started, for the printed resume command
            (default: ``sys.executable`` and the script's path).

    Returns:
        0 done; 1 a failure while training; 2 a command-line mistake; 130/143 stopped by SIGINT/SIGTERM.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv, defaults)
    stop = _SignalStop()
    with _console_logging(), stop.installed():
        try:
            return _run(args, argv, command, stop)
        except CLIError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            return err.status
        except KeyboardInterrupt:  # before fit started (fit's own interruptions are handled in _run)
            print("\ninterrupted before training started; nothing was saved", file=sys.stderr, flush=True)
            return exit_status(stop.signum)


def _run(args: argparse.Namespace, argv: list[str], command: Sequence[str] | None, stop: _SignalStop) -> int:
    started = time.perf_counter()
    out: Path = args.out
    _check_out_dir(out)
    resume = _resolve_resume(args)
    evaluators = _evaluators(args)  # fail fast, before loading anything
    saved_options: dict[str, Any] | None = None
    if resume is not None:
        saved_options = resume[1].get("extra", {}).get(RunOptions.state_name)
        if not isinstance(saved_options, dict):
            raise CLIError(f"cannot resume from {resume[0]}: it holds no command-line options (it was not written "
                           "by this command); load it with GANTrainer.load_checkpoint in your own script")
    lr = args.lr if args.lr is not None else (saved_options["lr"] if saved_options else _DEFAULT_LR)
    options = _resolved_options(args, lr)
    if resume is not None:
        assert saved_options is not None
        check_resumable(saved_options, options, resume[0])

    seed_everything(args.seed)  # before building the networks, so the initial weights are the same every run
    generator, discriminator = _networks(args)
    parts = build_parts(args.recipe, generator, discriminator, loss=args.loss, lr=lr, n_critic=args.n_critic,
                        batch_size=args.batch_size)
    extra: dict[str, Any] = {} if parts.augment is None else {"augment": parts.augment}
    try:
        trainer = GANTrainer(
            generator, discriminator, parts.loss, g_optimizer=parts.g_optimizer, d_optimizer=parts.d_optimizer,
            device=args.device, n_critic=parts.n_critic, regularizers=parts.regularizers,
            amp=None if args.amp == "none" else args.amp, compile=args.compile, **extra)
    except (ValueError, TypeError) as err:
        raise CLIError(str(err)) from None
    stop.trainer = trainer
    trainer.register_state(RunOptions.state_name, RunOptions(options))
    for callback in _with_ema_decay(parts.callbacks, args.ema_decay):  # before any resume: it restores their state
        callback.attach(trainer)

    # MNIST decoded once, as one tensor on the training device; one shuffle an epoch, full batches only.
    try:
        images, labels = load_mnist(args.data_root, args.conditional, trainer.device)  # (N, 1, 28, 28), (N,)
    except FileNotFoundError as err:
        raise CLIError(str(err)) from None
    if args.subset is not None:
        if args.subset > images.shape[0]:
            raise CLIError(f"--subset {args.subset} is more than the {images.shape[0]:,} training images "
                           "(leave it out to train on all)")
        images = images[: args.subset]
        labels = None if labels is None else labels[: args.subset]
    tensors = (images,) if labels is None else (images, labels)
    no_batch = CLIError(f"--subset {args.subset} leaves {images.shape[0]} training images, fewer than one batch "
                        f"(--batch-size {args.batch_size}{' x processes' if trainer.world_size > 1 else ''}): use a "
                        "larger --subset or a smaller --batch-size")
    try:
        loader = tensor_loader.TensorLoader(*tensors, batch_size=args.batch_size, shuffle=True, drop_last=True)
    except ValueError:
        raise no_batch from None
    if len(loader) == 0:
        raise no_batch

    # Reports and checkpoints, all through events. Order matters at each epoch end: metrics first, then the
    # files that show them, the checkpoint last, then run.json (which names the checkpoint's step).
    for evaluator in evaluators:
        evaluator.attach(trainer)
    reporting.HistoryCSV(out / "history.csv").attach(trainer)
    JSONLHistory(out / "history.jsonl").attach(trainer)
    reporting.LossPlot(out / "losses.png").attach(trainer)
    z64 = reporting.fixed_noise(64, trainer.latent_dim, seed=args.seed)  # (64, 100): one bank for every grid
    y64 = torch.arange(64) % NUM_CLASSES if args.conditional else None  # (64,) 0..9 repeated
    if args.conditional:
        from torchgan_lite.nets.conditional import digit_grid_labels

        assert y64 is not None
        DigitGrid(out, "samples", z64, y64, nrow=8, every=args.sample_every).attach(trainer)
        z10 = reporting.fixed_noise(10, trainer.latent_dim, seed=args.seed + 1).repeat(NUM_CLASSES, 1)  # (100, 100)
        DigitGrid(out, "digits", z10, digit_grid_labels(NUM_CLASSES, 10), nrow=10,
                  every=args.sample_every).attach(trainer)
    else:
        reporting.SampleGrid(out, z64, every=args.sample_every).attach(trainer)
    if args.logger == "tensorboard":
        try:
            TensorBoardLogger(out / "tensorboard", z=z64, labels=y64, image_every=args.sample_every).attach(trainer)
        except ModuleNotFoundError as err:
            raise CLIError(f"--logger tensorboard: {err}") from None
    if not args.no_progress:
        callbacks.ProgressBar().attach(trainer)
    callbacks.EpochLogger().attach(trainer)
    checkpoint = ModelCheckpoint(out / "checkpoint.pt", every=args.checkpoint_every)
    checkpoint.attach(trainer)

    def write_run_json(status: str, **more: Any) -> None:
        if not trainer.is_main_process:
            return
        info = reporting.run_info(trainer, {**vars(args), "resolved": options}, time.perf_counter() - started,
                                  status)
        info.update({"epochs": trainer.state.max_epochs or args.epochs, "epoch_step": trainer.state.epoch_step,
                     "lr": _learning_rates(trainer), "checkpoint": str(checkpoint.path),
                     "checkpoint_step": checkpoint.last_saved_step, **more})
        try:
            reporting.write_json(out / "run.json", info)
        except OSError as err:  # a full disk must not hide the real outcome
            log.warning("warning: could not write %s: %s", out / "run.json", err.strerror or err)

    trainer.add_callback(Event.EPOCH_END, lambda t: write_run_json("running"))

    if resume is not None:
        path = resume[0]
        explicit_lr = args.lr is not None
        try:
            # Weights, optimizers, step, history, data order, RNGs. The trainer refuses another loss, n_critic,
            # amp or batch size, and other optimizer hyper-parameters unless --lr asks for this run's ("current").
            trainer.load_checkpoint(path, data=loader, hyperparameters="current" if explicit_lr else "check")
        except ValueError as err:
            raise CLIError(f"cannot resume: {err}") from None
        trainer.state.max_epochs = args.epochs
        if trainer.is_main_process:
            log.info("resumed from %s: %s", path, _epoch_words(trainer))
        if explicit_lr and saved_options and saved_options.get("lr") != lr:
            log.info("learning rate %g (--lr), was %g in the checkpoint", lr, saved_options.get("lr"))
        st = trainer.state
        if st.epoch >= args.epochs or (args.max_steps is not None and st.step >= args.max_steps):
            # A scheduler rerunning the command of a finished run: nothing to train, and no warning to read.
            write_run_json("completed")
            if trainer.is_main_process:
                log.info("nothing to train: the checkpoint has reached --epochs %d%s already", args.epochs,
                         f" or --max-steps {args.max_steps}" if args.max_steps is not None else "")
            return 0

    steps = len(loader)
    limit = f", stopping at step {args.max_steps}" if args.max_steps is not None else ""
    kind = f"{'conditional ' if args.conditional else ''}{args.arch.upper()}"
    if trainer.is_main_process:
        log.info("training the %s GAN on %s: %d epochs of %d steps%s, loss %s, recipe %s, lr %g, outputs in %s/",
                 kind, trainer.device, args.epochs, steps, limit, args.loss, args.recipe, lr, out)
    if stop.signum is not None:  # a signal came while loading
        print(f"stopped by {signal.Signals(stop.signum).name} before training started; nothing was saved",
              file=sys.stderr, flush=True)
        return exit_status(stop.signum)

    write_run_json("running")
    try:
        trainer.fit(loader, epochs=args.epochs, max_steps=args.max_steps)
    except KeyboardInterrupt as err:
        return _interrupted(trainer, checkpoint, getattr(err, "signal", None) or stop.signum or signal.SIGINT,
                            argv, command, write_run_json)
    except Exception as err:
        message = _write_failure(err, out, checkpoint.path)
        if message is None and isinstance(err, (NonFiniteLossError, ValueError, TypeError)):
            message = f"{type(err).__name__}: {err}"
        write_run_json("failed", error=message or f"{type(err).__name__}: {err}")
        if message is None:
            raise  # a bug: its traceback is the useful report
        saved = f"; the last checkpoint, {checkpoint.path}, is intact" if checkpoint.path.exists() else ""
        raise CLIError(f"{message} ({_epoch_words(trainer)}){saved}", status=EXIT_FAILED) from None
    st = trainer.state
    finished = st.epoch >= args.epochs or (args.max_steps is not None and st.step >= args.max_steps)
    if stop.signum is not None and not finished:  # a signal outside the trainer's own handling stopped fit early
        return _interrupted(trainer, checkpoint, stop.signum, argv, command, write_run_json)
    write_run_json("completed")
    why = (f" (--max-steps {args.max_steps} reached in epoch {st.epoch + 1} of {st.max_epochs})"
           if st.epoch_step and args.max_steps is not None and st.step >= args.max_steps else "")
    final = "digits_final.png" if args.conditional else "samples_final.png"
    if trainer.is_main_process:
        log.info("done: %d of %d epochs completed, step %d%s in %.0f s; samples in %s, losses in %s", st.epoch,
                 st.max_epochs, st.step, why, time.perf_counter() - started, out / final, out / "losses.png")
    return 0


def _interrupted(trainer: GANTrainer, checkpoint: ModelCheckpoint, signum: int, argv: list[str],
                 command: Sequence[str] | None, write_run_json: Callable[..., None]) -> int:
    """Report a run stopped by a signal; the exit status says which (130 SIGINT, 143 SIGTERM)."""
    name = signal.Signals(signum).name
    write_run_json("interrupted", signal=name)
    if trainer.is_main_process:
        st = trainer.state
        where = (_epoch_words(trainer) if st.epoch_step else
                 f"after epoch {st.epoch} of {st.max_epochs} ({st.epoch} completed), step {st.step}")
        print(f"\n{name}: stopped {where}.", file=sys.stderr, flush=True)
        if checkpoint.last_saved_step == trainer.state.step:
            print(f"Checkpoint saved to {checkpoint.path}. Resume with:\n  "
                  f"{resume_command(argv, checkpoint.path, command)}", file=sys.stderr, flush=True)
        else:
            print("No checkpoint of this step was saved (stopped inside a step).", file=sys.stderr, flush=True)
    return exit_status(signum)


if __name__ == "__main__":
    sys.exit(main())
