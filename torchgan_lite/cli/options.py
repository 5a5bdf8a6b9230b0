"""The training command's options: argparse building and the checks that need several options at once.

One option set for every run of the package; ``examples/mnist_mlp.py`` and
``examples/mnist_conditional.py`` differ only in their defaults (:class:`CLIDefaults`).
Every value is checked by its argparse type (:mod:`torchgan_lite.cli.common`); what
depends on two options (``--norm`` without ``--arch dcgan``...) by :func:`parse_args`,
which also fills in the defaults that depend on ``--data``:

- MNIST-like data (``mnist``, ``fashion-mnist``: 1x28x28 grey) keeps the reference recipe
  exactly: the MLP networks (``--arch mlp``) and the script's ``--recipe``;
- any other source (a folder of images, a colour set) gets a convolutional recipe: DCGAN
  networks at the image size (``--arch dcgan``) and the DCGAN paper's Adam
  (``--recipe dcgan``: 2e-4, betas (0.5, 0.999)), unless told otherwise.
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
from torchgan_lite.data.sources import NAMED_SETS
from torchgan_lite.nets.dcgan import IMAGE_SIZES
from torchgan_lite.nets.resnet import RESNET_IMAGE_SIZES
from torchgan_lite.recipes import LOSSES, RECIPES, SPECS

__all__ = [
    "ARCHS", "CONDITIONAL", "MNIST_LIKE", "NUM_CLASSES", "REFERENCE", "CLIDefaults", "build_parser", "invocation",
    "is_named_set", "parse_args"
]

#: MNIST's classes (the conditional runs' labels).
NUM_CLASSES = 10
#: The network families ``--arch`` builds.
ARCHS = ("mlp", "dcgan", "resnet")
#: The sets trained with the reference recipe's defaults (1x28x28 grey).
MNIST_LIKE = ("mnist", "fashion-mnist")
#: The recipe a source other than :data:`MNIST_LIKE` gets by default.
IMAGE_RECIPE = "dcgan"


def is_named_set(source: str) -> bool:
    """Whether ``--data`` names a data set (as :func:`torchgan_lite.load_images` reads it), not a folder."""
    return source.strip().lower().replace("_", "-") in NAMED_SETS


def _source(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a data set name ({', '.join(NAMED_SETS)}) or a folder, got "
                                         "an empty string")
    return text.strip().lower().replace("_", "-") if is_named_set(text) else text


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
    model.add_argument("--arch", choices=ARCHS, default=None,
                       help="mlp: the reference recipe's networks; dcgan: DCGAN networks at the image size (28, or "
                            "a power of two from 32 to 256); resnet: the SNGAN/BigGAN residual networks (32, 64 or "
                            "128; spectral norm in D); the convolutional ones are slower on a CPU (default: mlp for "
                            "mnist and fashion-mnist, else dcgan)")
    model.add_argument("--norm", choices=("batch", "spectral", "none"), default="batch",
                       help="normalisation of the dcgan networks (default: %(default)s)")
    model.add_argument("--recipe", choices=tuple(RECIPES), default=None,
                       help="; ".join(f"{name}: {text}" for name, text in RECIPES.items())
                       + f"; measured in docs/recipes.md (default: {defaults.recipe} for mnist and fashion-mnist, "
                         f"else {IMAGE_RECIPE})")
    model.add_argument("--loss", choices=LOSSES, default=None,
                       help="GAN loss; wgan-gp is WassersteinLoss + GradientPenalty(10) with 5 critic steps "
                            "(default: the recipe's: rpgan for rpgan-r1r2, else nonsaturating)")
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
    run.add_argument("--data", type=_source, default="mnist", metavar="|".join([*NAMED_SETS, "PATH"]),
                     help="the training images: a data set by name (read from --data-root) or a folder of images "
                          "(png, jpg, jpeg, webp, bmp, searched recursively; its first-level sub-folders are the "
                          "classes of --conditional), decoded once and cached (default: %(default)s)")
    run.add_argument("--image-size", type=positive_int, default=None, metavar="PX",
                     help="resize each image's short side to PX and crop the centre square (default: the images' "
                          "own size, which they must share)")
    run.add_argument("--channels", type=int, choices=(1, 3), default=None,
                     help="1: grey, 3: RGB (default: 1 when every image is grey, else 3)")
    run.add_argument("--hflip", action="store_true",
                     help="mirror each training image left-right with probability 1/2, drawn with the data order "
                          "(so a resume repeats it) (default: off)")
    run.add_argument("--stream", action="store_true",
                     help="decode each image when it is batched (torchdata's StatefulDataLoader, with --workers "
                          "processes) instead of once into memory: for a folder larger than memory; a resume is "
                          "still exact mid-epoch (default: off, decoded once and cached)")
    run.add_argument("--workers", type=non_negative_int, default=2, metavar="N",
                     help="decoding processes of --stream (0: in the training process) (default: %(default)s)")
    run.add_argument("--subset", type=positive_int, default=None, metavar="N",
                     help="train on the first N images (MNIST has 60,000), for quick tests (default: all)")
    run.add_argument("--data-root", type=path_arg, default=None, metavar="DIR",
                     help="folder holding the named sets (MNIST/raw/, cifar-10-batches-py/...) (default: "
                          "$TORCHGAN_LITE_DATA, else a download into the user cache folder, ~/.cache/torchgan_lite)")
    run.add_argument("--seed", type=seed, default=0, metavar="S",
                     help="in [0, 2**32): seeds the weights, noise, data order and the sample grids' noise "
                          "(default: %(default)s)")

    dev = p.add_argument_group("device and speed")
    dev.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                     help="auto: CUDA when present, else the CPU (default: %(default)s)")
    dev.add_argument("--amp", choices=("none", "bf16", "auto"), default="none",
                     help="bf16 autocast for the forward passes; auto: bf16 where it is a speed-up (a CPU with "
                          "AVX512-BF16 or AMX, a CUDA GPU with bf16), else float32 (default: %(default)s)")
    dev.add_argument("--compile", action="store_true",
                     help="torch.compile both networks; the first steps are slow while it compiles. Not a speed-up on "
                          "a CPU: slower than the eager step on every CPU measured (docs/benchmarks.md); for GPUs "
                          "(default: off)")

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
    out.add_argument("--eval-features", default=None, metavar="mnist|inception|dinov2|clip|PATH",
                     help="the feature extractor of --eval-every: the MNIST classifier, torch-fidelity's "
                          "(pip install 'torchgan_lite[fid]'), or a TorchScript file mapping (N, C, H, W) images in "
                          "[-1, 1] to (N, D) features (default: mnist for --data mnist, else inception)")
    return p


def parse_args(argv: Sequence[str] | None = None, defaults: CLIDefaults = REFERENCE) -> argparse.Namespace:
    """Parse and check the options; a mistake exits with one ``error:`` line and status 2."""
    p = build_parser(defaults)
    args = p.parse_args(argv)
    mnist_like = args.data in MNIST_LIKE
    args.arch = args.arch or ("mlp" if mnist_like else "dcgan")
    args.recipe = args.recipe or (defaults.recipe if mnist_like else IMAGE_RECIPE)
    args.loss = args.loss or SPECS[args.recipe].loss or "nonsaturating"
    if args.data_root is not None and not is_named_set(args.data):
        p.error(f"--data-root is where the named sets are read from; --data {args.data} is a folder (leave "
                "--data-root out)")
    if args.stream and is_named_set(args.data):
        p.error(f"--stream decodes a folder of images as it trains; --data {args.data} is a named set, which is "
                "decoded once into memory (leave --stream out)")
    if args.eval_features is not None and not args.eval_every:
        p.error(f"--eval-features {args.eval_features} scores the samples of --eval-every, which is off (give "
                "--eval-every N)")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda, but CUDA is not available here (use --device auto or cpu)")
    sizes = {"dcgan": sorted(IMAGE_SIZES), "resnet": list(RESNET_IMAGE_SIZES)}.get(args.arch)
    if args.image_size is not None and sizes is not None and args.image_size not in sizes:
        p.error(f"--image-size {args.image_size}: --arch {args.arch} builds {', '.join(map(str, sizes))} pixels "
                f"(the images are resized to it)")
    if args.norm != "batch" and args.arch != "dcgan":
        p.error(f"--norm {args.norm} applies to --arch dcgan only (this run builds --arch {args.arch})")
    if args.resume is not None:
        args.resume = str(args.resume)  # "auto", "latest" or a path, as typed
    return args
