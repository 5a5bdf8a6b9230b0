"""The training command's options: argparse building and the checks that need several options at once.

One option set for every MNIST run of the package; ``examples/mnist_mlp.py`` and
``examples/mnist_conditional.py`` differ only in their defaults (:class:`CLIDefaults`).
Every value is checked by its argparse type (:mod:`torchgan_lite.cli.common`); what
depends on two options (``--norm`` without ``--arch dcgan``...) by :func:`parse_args`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from torchgan_lite.cli.common import (
    Parser,
    non_negative_int,
    output_dir,
    path_arg,
    positive_float,
    positive_int,
    seed,
    unit_fraction,
)
from torchgan_lite.recipes import LOSSES, RECIPES

__all__ = ["CONDITIONAL", "NUM_CLASSES", "REFERENCE", "CLIDefaults", "build_parser", "invocation", "parse_args"]

#: MNIST's classes (the conditional runs' labels).
NUM_CLASSES = 10


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


def invocation() -> list[str]:
    """How this program was started: the interpreter and the script's absolute path, or ``-m module``."""
    main_module = sys.modules.get("__main__")
    spec = getattr(main_module, "__spec__", None)
    if spec is not None and getattr(spec, "name", None):  # python -m package.module
        return [sys.executable, "-m", spec.name]
    return [sys.executable, os.path.abspath(sys.argv[0])]


def _program_name() -> str:
    """``--help``'s name for this program: ``python -m torchgan_lite.train`` or the script's file name."""
    command = invocation()
    return "python " + " ".join(command[1:]) if command[1] == "-m" else os.path.basename(command[1])


def build_parser(defaults: CLIDefaults = REFERENCE) -> argparse.ArgumentParser:
    """The shared option set, with ``defaults`` filled in."""
    p = Parser(
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
    model.add_argument("--ema-decay", type=unit_fraction, default=None, metavar="D",
                       help="generator EMA decay in [0, 1), 0 turns it off (default: the recipe's)")

    run = p.add_argument_group("length and data")
    run.add_argument("--epochs", type=positive_int, default=defaults.epochs, metavar="N",
                     help="total epochs, counting those of a resumed run (default: %(default)s)")
    run.add_argument("--max-steps", type=positive_int, default=None, metavar="N",
                     help="stop at this total step count, e.g. for a smoke run (default: no limit)")
    run.add_argument("--batch-size", type=positive_int, default=128, metavar="B",
                     help="images per batch and process (under torchrun the global batch is B x processes; a "
                          "checkpoint resumes at the same global batch on any number of processes); "
                          "128 gives 468 batches an epoch (default: %(default)s)")
    run.add_argument("--subset", type=positive_int, default=None, metavar="N",
                     help="train on the first N of the 60,000 images, for quick tests (default: all)")
    run.add_argument("--data-root", type=path_arg, default=None, metavar="DIR",
                     help="folder holding MNIST/raw/ (default: $TORCHGAN_LITE_DATA, else a download into "
                          "the user cache folder, ~/.cache/torchgan_lite)")
    run.add_argument("--seed", type=seed, default=0, metavar="S",
                     help="in [0, 2**32): seeds the weights, noise, data order and the sample grids' noise "
                          "(default: %(default)s)")

    dev = p.add_argument_group("device and speed")
    dev.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                     help="auto: CUDA when present, else the CPU (default: %(default)s)")
    dev.add_argument("--amp", choices=("none", "bf16"), default="none",
                     help="bf16 autocast for the forward passes (default: %(default)s)")
    dev.add_argument("--compile", action="store_true",
                     help="torch.compile both networks; the first steps are slow while it compiles (default: off)")

    out = p.add_argument_group("outputs and resuming")
    out.add_argument("--out", type=output_dir, default=Path(defaults.out), metavar="DIR",
                     help="output folder (default: %(default)s)")
    out.add_argument("--resume", type=path_arg, default=None, metavar="auto|latest|PATH",
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
    if args.conditional and args.eval_every and args.eval_n < NUM_CLASSES:
        p.error(f"--eval-n must be >= {NUM_CLASSES} for a conditional run (one sample per digit), got {args.eval_n}")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda, but CUDA is not available here (use --device auto or cpu)")
    if args.norm != "batch" and args.arch != "dcgan":
        p.error(f"--norm {args.norm} applies to --arch dcgan only (this run builds --arch {args.arch})")
    if args.resume is not None:
        args.resume = str(args.resume)  # "auto", "latest" or a path, as typed
    return args
