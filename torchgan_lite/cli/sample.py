"""Samples from a saved generator, without any training code: a function and a command line.

    python -m torchgan_lite.sample runs/mnist_mlp/checkpoint.pt --n 64 --out grid.png
    python -m torchgan_lite.sample runs/mnist_mlp/checkpoint.pt --n 1000 --tensor samples.pt --seed 1
    python -m torchgan_lite.sample runs/mnist_conditional/checkpoint.pt --digit 7 --out sevens.png

:func:`load_generator` rebuilds the generator a checkpoint was trained with and loads its
weights: the exponential moving average of them (``extra["ema"]["generator"]``, written by
:class:`~torchgan_lite.callbacks.ema.GeneratorEMA`) when the checkpoint has one, unless
``use_ema=False`` (``--no-ema``). A conditional generator draws the digit asked for with
``--digit D``; without it, a grid cycles through the classes 0, 1, 2, ...

How the generator is rebuilt:

- Checkpoints of format 2 hold ``models["generator"]``, the record every registered
  builder leaves on its module (:func:`torchgan_lite.nets.registry.module_config`):
  :func:`torchgan_lite.nets.registry.build` makes the same network, whatever builder and
  size (MLP, conditional MLP, DCGAN at 28, 32 or 64, or a builder of your own that is
  registered and imported).
- Older checkpoints (format 1, no ``models`` entry) hold no such record: the builder and
  its arguments are read off the weight shapes and ``trainer``'s ``latent_dim``,
  ``sample_shape`` and ``num_classes`` (:func:`legacy_generator_config`). This finds
  the library's three generators; arguments that leave no trace in the weights
  (``negative_slope``) get their defaults.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from torchgan_lite.checkpoints.export import load_generator
from torchgan_lite.nets.sampling import sample_images

__all__ = ["main"]


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="torchgan-lite-sample",
                                description="Sample a grid (or a tensor) from a torchgan_lite checkpoint.",
                                epilog="Also: python -m torchgan_lite.sample.")
    p.add_argument("checkpoint", type=Path, metavar="CHECKPOINT",
                   help="checkpoint file, e.g. runs/mnist_mlp/checkpoint.pt")
    p.add_argument("--n", type=int, default=64, metavar="N", help="number of samples (default: 64, an 8x8 grid)")
    p.add_argument("--out", type=Path, default=None, metavar="PNG",
                   help="PNG grid to write (default: samples.png, unless --tensor is given)")
    p.add_argument("--tensor", type=Path, default=None, metavar="FILE",
                   help="also/instead write the raw samples (n, C, H, W) in [-1, 1] with torch.save")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="noise seed (default: 0)")
    p.add_argument("--nrow", type=int, default=8, metavar="K", help="images per grid row (default: 8)")
    p.add_argument("--device", default="cpu", metavar="DEVICE", help="cpu, cuda or auto (default: cpu)")
    p.add_argument("--digit", type=int, default=None, metavar="D",
                   help="conditional checkpoints: draw only this class (default: cycle through the classes)")
    p.add_argument("--no-ema", action="store_true",
                   help="sample the trained weights even if the checkpoint holds an EMA of them")
    args = p.parse_args(argv)
    if args.n < 1:
        p.error(f"--n must be >= 1, got {args.n}")
    if args.nrow < 1:
        p.error(f"--nrow must be >= 1, got {args.nrow}")
    if args.out is None and args.tensor is None:
        args.out = Path("samples.png")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status (0 done, 2 bad checkpoint or arguments)."""
    from torchgan_lite.callbacks.reporting import save_grid

    args = _parse_args(argv)
    try:
        generator = load_generator(args.checkpoint, device=args.device, use_ema=not args.no_ema)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    labels = None
    if args.digit is not None:
        num_classes = getattr(generator, "num_classes", None)
        if num_classes is None:
            print(f"error: --digit {args.digit}: {args.checkpoint} holds an unconditional generator, which "
                  "cannot be asked for a class", file=sys.stderr)
            return 2
        if not 0 <= args.digit < num_classes:
            print(f"error: --digit must be in [0, {num_classes}), got {args.digit}", file=sys.stderr)
            return 2
        labels = torch.full((args.n,), args.digit, dtype=torch.int64)  # (n,)
    images = sample_images(generator, args.n, seed=args.seed, labels=labels)  # (n, C, H, W) in [-1, 1]
    if args.tensor is not None:
        args.tensor.parent.mkdir(parents=True, exist_ok=True)
        torch.save(images, args.tensor)
        print(f"wrote {tuple(images.shape)} samples to {args.tensor}")
    if args.out is not None:
        save_grid(images, args.out, nrow=args.nrow)
        print(f"wrote a grid of {args.n} samples to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
