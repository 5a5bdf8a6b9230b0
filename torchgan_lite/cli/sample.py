"""Samples from a saved generator, without any training code: ``torchgan-lite-sample``.

    python -m torchgan_lite.sample runs/mnist_mlp/checkpoint.pt --n 64 --out grid.png
    python -m torchgan_lite.sample runs/mnist_mlp/checkpoint.pt --n 1000 --tensor samples.pt --seed 1
    python -m torchgan_lite.sample runs/mnist_conditional/checkpoint.pt --digit 7 --out sevens.png

The generator is rebuilt by :func:`torchgan_lite.checkpoints.export.load_generator` from the
builder record a checkpoint holds (``models["generator"]``, left by every registered
builder), with the exponential moving average of its weights when the checkpoint has one
(``extra["ema"]["generator"]``, written by :class:`~torchgan_lite.callbacks.ema.GeneratorEMA`),
unless ``--no-ema``. A conditional generator draws the class asked for with ``--digit D``;
without it, a grid cycles through the classes 0, 1, 2, ...

Both outputs are written atomically (a temporary file renamed over the target): the grid
as a PNG, the samples ``(n, C, H, W)`` in [-1, 1] with ``torch.save`` (``--tensor``). Any
mistake (a bad value, a folder where a file is expected, an unwritable place, a file that
is not a checkpoint) ends in one ``error:`` line and exit status 2
(:func:`torchgan_lite.cli.common.entry_point`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import torch

from torchgan_lite.callbacks.reporting import save_grid
from torchgan_lite.checkpoints.atomic import atomic_open
from torchgan_lite.checkpoints.export import load_generator
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
from torchgan_lite.utils.runtime import resolve_device

__all__ = ["build_parser", "main"]


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
    p.add_argument("--digit", type=non_negative_int, default=None, metavar="D",
                   help="conditional checkpoints: draw only this class (default: cycle through the classes)")
    p.add_argument("--no-ema", action="store_true",
                   help="sample the trained weights even if the checkpoint holds an EMA of them")
    return p


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
    if args.digit is not None:
        num_classes = getattr(generator, "num_classes", None)
        if num_classes is None:
            raise CLIError(f"--digit {args.digit}: {args.checkpoint} holds an unconditional generator, which "
                           "cannot be asked for a class")
        if args.digit >= num_classes:
            raise CLIError(f"--digit must be in [0, {num_classes}), got {args.digit}")
        labels = torch.full((args.n,), args.digit, dtype=torch.int64)  # (n,)
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
