"""Samples from a saved generator, without any training code: ``torchgan-lite-sample``.

    python -m torchgan_lite.sample runs/mnist_mlp/checkpoint.pt --n 64 --out grid.png
    python -m torchgan_lite.sample runs/mnist_mlp/checkpoint.pt --n 1000 --tensor samples.pt --seed 1
    python -m torchgan_lite.sample runs/mnist_conditional/checkpoint.pt --digit 7 --out sevens.png
    python -m torchgan_lite.sample runs/photos/checkpoint.pt --label cats --out cats.png

The generator is rebuilt by :func:`torchgan_lite.checkpoints.export.load_generator` from the
builder record a checkpoint holds (``models["generator"]``, left by every registered
builder), with the exponential moving average of its weights when the checkpoint has one
(``extra["ema"]["generator"]``, written by :class:`~torchgan_lite.callbacks.ema.GeneratorEMA`),
unless ``--no-ema``. A conditional generator draws the class asked for with ``--label NAME``
(the class names a ``torchgan-lite-train`` checkpoint records: a folder's sub-folders, a
set's classes) or ``--label INDEX``; ``--digit D`` is MNIST's spelling of ``--label D``.
Without them, a grid cycles through the classes 0, 1, 2, ...

Both outputs are written atomically (a temporary file renamed over the target): the grid
as a PNG, the samples ``(n, C, H, W)`` in [-1, 1] with ``torch.save`` (``--tensor``). Any
mistake (a bad value, a folder where a file is expected, an unwritable place, a file that
is not a checkpoint) ends in one ``error:`` line and exit status 2
(:func:`torchgan_lite.cli.common.entry_point`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from torchgan_lite.callbacks.reporting import save_grid
from torchgan_lite.checkpoints.export import load_generator
from torchgan_lite.checkpoints.format import load_checkpoint
from torchgan_lite.cli.common import (
    CLIError,
    Parser,
    about_option,
    entry_point,
    non_negative_int,
    output_file,
    path_arg,
    positive_int,
    seed,
)
from torchgan_lite.nets.sampling import sample_images
from torchgan_lite.utils.atomic import atomic_open
from torchgan_lite.utils.runtime import resolve_device

__all__ = ["build_parser", "class_names", "main"]


def build_parser() -> Parser:
    """The command's options."""
    p = Parser(prog="torchgan-lite-sample",
               description="Sample a grid (or a tensor) from a torchgan_lite checkpoint.",
               epilog="Also: python -m torchgan_lite.sample.")
    p.add_argument("checkpoint", type=path_arg, metavar="CHECKPOINT",
                   help="checkpoint file, e.g. runs/mnist_mlp/checkpoint.pt")
    p.add_argument("--n", type=positive_int, default=64, metavar="N",
                   help="number of samples (default: 64, an 8x8 grid)")
    p.add_argument("--out", type=output_file, default=None, metavar="PNG",
                   help="PNG grid to write (default: samples.png, unless --tensor is given)")
    p.add_argument("--tensor", type=output_file, default=None, metavar="FILE",
                   help="also/instead write the raw samples (n, C, H, W) in [-1, 1] with torch.save")
    p.add_argument("--seed", type=seed, default=0, metavar="S", help="noise seed, in [0, 2**32) (default: 0)")
    p.add_argument("--nrow", type=positive_int, default=8, metavar="K", help="images per grid row (default: 8)")
    p.add_argument("--device", default="cpu", metavar="DEVICE", help="cpu, cuda or auto (default: cpu)")
    p.add_argument("--label", type=_label, default=None, metavar="NAME|INDEX",
                   help="conditional checkpoints: draw only this class, by its name (a sub-folder of the training "
                        "folder, a class of the named set) or its index (default: cycle through the classes)")
    p.add_argument("--digit", type=non_negative_int, default=None, metavar="D",
                   help="MNIST's spelling of --label D: draw only this digit")
    p.add_argument("--no-ema", action="store_true",
                   help="sample the trained weights even if the checkpoint holds an EMA of them")
    return p


def _label(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a class name or index, got an empty string")
    return text


def class_names(checkpoint: Path) -> list[str]:
    """The class names a ``torchgan-lite-train`` checkpoint records (index order); empty when it records none."""
    if not checkpoint.is_file():
        return []  # an exported folder: its generator's classes have no names
    options = load_checkpoint(checkpoint).get("extra", {}).get("cli_options")
    names = options.get("classes") if isinstance(options, dict) else None
    return [str(n) for n in names] if isinstance(names, list) else []


def _class_index(flag: str, value: str, num_classes: int | None, checkpoint: Path) -> int:
    """The class ``--label NAME|INDEX`` (or ``--digit INDEX``) asks for: a name first, then an index."""
    if num_classes is None:
        raise CLIError(f"{flag} {value}: {checkpoint} holds an unconditional generator, which cannot be asked for "
                       "a class")
    names = class_names(checkpoint) if flag == "--label" else []
    if value in names:
        return names.index(value)
    try:
        index = int(value)
    except ValueError:
        known = f"its classes: {', '.join(names[:20])}{', ...' if len(names) > 20 else ''}" if names else \
            f"it records no class names: give an index in [0, {num_classes})"
        raise CLIError(f"{flag} {value!r} is not a class of {checkpoint} ({known})") from None
    if not 0 <= index < num_classes:
        raise CLIError(f"{flag} must be a class name or an index in [0, {num_classes}), got {value}")
    return index


@entry_point
def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status (0 done, 2 a mistake: bad options, checkpoint or output path)."""
    args = build_parser().parse_args(argv)
    if args.out is None and args.tensor is None:
        args.out = output_file("samples.png")
    with about_option("--device", repr(args.device)):
        device = resolve_device(args.device)
    generator = load_generator(args.checkpoint, device=device, use_ema=not args.no_ema)
    labels = None
    if args.label is not None and args.digit is not None:
        raise CLIError(f"--label {args.label} and --digit {args.digit}: give one (--digit is MNIST's --label)")
    if args.label is not None or args.digit is not None:
        flag, value = ("--label", args.label) if args.label is not None else ("--digit", str(args.digit))
        index = _class_index(flag, value, getattr(generator, "num_classes", None), args.checkpoint)
        labels = torch.full((args.n,), index, dtype=torch.int64)  # (n,)
    images = sample_images(generator, args.n, seed=args.seed, labels=labels)  # (n, C, H, W) in [-1, 1]
    if args.tensor is not None:
        with about_option("--tensor", args.tensor), atomic_open(args.tensor, "wb", what="write the samples") as f:
            torch.save(images, f)
        print(f"wrote {tuple(images.shape)} samples to {args.tensor}")
    if args.out is not None:
        with about_option("--out", args.out):
            save_grid(images, args.out, nrow=args.nrow)
        print(f"wrote a grid of {args.n} samples to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
