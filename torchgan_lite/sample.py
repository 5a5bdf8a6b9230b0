"""Samples from a saved generator, without any training code: a function and a command line.

    python -m torchgan_lite.sample runs/mnist_mlp/checkpoint.pt --n 64 --out grid.png
    python -m torchgan_lite.sample runs/mnist_mlp/checkpoint.pt --n 1000 --tensor samples.pt --seed 1

:func:`load_generator` rebuilds an :func:`~torchgan_lite.models.mlp_generator` from the
shapes stored in a checkpoint (``latent_dim``, ``sample_shape`` and the Linear weight
shapes, which give the hidden widths) and loads its weights. If the checkpoint's
``extra`` dict holds an ``"ema"`` entry with a ``"generator"`` state dict (an
exponential moving average of the weights), that one is preferred. Conditional MLP
generators (:mod:`torchgan_lite.conditional`) and DCGAN generators (:mod:`torchgan_lite.dcgan`)
are recognised from their weights too; ``--digit D`` draws only digit D from a conditional one
(without it, a conditional grid cycles through the classes 0, 1, 2, ...).

    python -m torchgan_lite.sample runs/mnist_conditional/checkpoint.pt --digit 7 --out sevens.png
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import load_checkpoint
from .models import mlp_generator
from .utils import resolve_device

__all__ = ["generator_state", "load_generator", "main", "mlp_generator_from_state", "sample_images"]

_LINEAR_WEIGHT = re.compile(r"^net\.(\d+)\.weight$")


def generator_state(ckpt: Mapping[str, Any], source: str = "checkpoint") -> tuple[dict[str, torch.Tensor], str]:
    """The generator weights to sample from: the EMA copy if the checkpoint has one, else the trained ones.

    Returns:
        ``(state_dict, which)`` with ``which`` either ``"ema"`` or ``"generator"``.
    """
    ema = ckpt.get("extra", {}).get("ema") if isinstance(ckpt.get("extra"), Mapping) else None
    if isinstance(ema, Mapping) and isinstance(ema.get("generator"), Mapping):
        return dict(ema["generator"]), "ema"
    state = ckpt.get("generator")
    if not isinstance(state, Mapping):
        raise ValueError(f"{source}: no generator state dict in the checkpoint (its keys: {sorted(ckpt)[:8]})")
    return dict(state), "generator"


def mlp_generator_from_state(state: Mapping[str, torch.Tensor], latent_dim: int, sample_shape: Sequence[int],
                             source: str = "checkpoint") -> nn.Module:
    """Build the :func:`~torchgan_lite.models.mlp_generator` that ``state`` fits, and load it.

    The hidden widths are read from the Linear weights ``net.K.weight`` ``(out, in)``.

    Raises:
        ValueError: ``state`` is not the state of an ``mlp_generator`` with these shapes
            (say, a custom generator: build it yourself and load ``ckpt["generator"]``).
    """
    layers = sorted((int(m.group(1)), v) for k, v in state.items() if (m := _LINEAR_WEIGHT.match(k)))
    shapes = [tuple(w.shape) for _, w in layers if isinstance(w, torch.Tensor)]
    not_mlp = (f"{source}: the generator is not an mlp_generator (state keys {sorted(state)[:6]}); "
               "build your generator class and load ckpt['generator'] into it")
    if not shapes or any(len(s) != 2 for s in shapes):
        raise ValueError(not_mlp)
    widths = [shapes[0][1]] + [s[0] for s in shapes]  # latent, hidden..., prod(sample_shape)
    chained = all(shapes[i][1] == shapes[i - 1][0] for i in range(1, len(shapes)))
    if not chained or widths[0] != latent_dim or widths[-1] != math.prod(sample_shape):
        raise ValueError(f"{source}: the generator's Linear shapes {shapes} do not map latent_dim={latent_dim} "
                         f"to samples of shape {tuple(sample_shape)}")
    generator = mlp_generator(latent_dim=latent_dim, hidden=tuple(widths[1:-1]), out_shape=tuple(sample_shape))
    try:
        generator.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{not_mlp}: {str(err).splitlines()[0]}") from err
    return generator


def load_generator(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> nn.Module:
    """The generator saved in a torchgan_lite checkpoint, in eval mode on ``device``.

    Args:
        path: A checkpoint written by ``GANTrainer.save_checkpoint`` (or ``ModelCheckpoint``).
        device: Where to put the generator (``"cpu"``, ``"cuda"``, ``"auto"``...).

    Returns:
        An ``mlp_generator``, ``conditional_mlp_generator`` or ``dcgan_generator`` (with
        ``latent_dim``, ``out_shape`` and, if conditional, ``num_classes``); EMA weights if saved.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a readable torchgan_lite checkpoint, or none of those generators in it.
    """
    dev = resolve_device(device)
    ckpt = load_checkpoint(path)  # checks the file and its format; weights_only loading
    source = f"checkpoint {path}"
    trainer_info = ckpt.get("trainer")
    if not isinstance(trainer_info, Mapping) or "latent_dim" not in trainer_info or "sample_shape" not in trainer_info:
        raise ValueError(f"{source}: no 'trainer' entry with latent_dim and sample_shape")
    state, _ = generator_state(ckpt, source)
    latent_dim, sample_shape = int(trainer_info["latent_dim"]), [int(s) for s in trainer_info["sample_shape"]]
    num_classes = trainer_info.get("num_classes")
    first = state.get("net.0.weight", state.get("net.0.parametrizations.weight.original"))
    if isinstance(first, torch.Tensor) and first.dim() == 4:  # a transposed convolution first: a DCGAN
        from .dcgan import dcgan_generator_from_state

        generator: nn.Module = dcgan_generator_from_state(state, latent_dim, sample_shape)
    elif num_classes is not None:
        from .conditional import conditional_mlp_generator_from_state

        generator = conditional_mlp_generator_from_state(state, latent_dim, sample_shape)
    else:
        generator = mlp_generator_from_state(state, latent_dim, sample_shape, source)
    if getattr(generator, "num_classes", None) != num_classes:
        raise ValueError(f"{source}: saved with num_classes={num_classes}, but its generator weights are for "
                         f"num_classes={getattr(generator, 'num_classes', None)}")
    return generator.to(dev).eval()


def sample_images(generator: nn.Module, n: int, seed: int | None = None, batch_size: int = 1024,
                  labels: torch.Tensor | None = None) -> torch.Tensor:
    """``n`` samples ``(n, *sample_shape)`` from ``generator``, on the CPU, without gradients.

    Args:
        generator: A module with a ``latent_dim`` attribute (and ``num_classes`` if conditional).
        n: How many samples.
        seed: Seed of the noise (its own ``torch.Generator``); None: torch's global RNG.
        batch_size: Samples per forward pass (bounds the memory).
        labels: Conditional generators only: int64 classes ``(n,)``; None cycles through
            the classes (``0, 1, ..., num_classes - 1, 0, ...``).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    latent_dim = getattr(generator, "latent_dim", None)
    if not isinstance(latent_dim, int):
        raise TypeError(f"generator must have an int latent_dim attribute, got {latent_dim!r}")
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    z = torch.randn(n, latent_dim, generator=gen)  # (n, latent_dim), drawn on the CPU for every device
    device = next(generator.parameters()).device
    num_classes = getattr(generator, "num_classes", None)
    if num_classes is None:
        if labels is not None:
            raise ValueError("labels were given but the generator is not conditional (no num_classes)")
        with torch.no_grad():
            chunks = [generator(zb.to(device)).cpu() for zb in z.split(batch_size)]
        return torch.cat(chunks)  # (n, *sample_shape)
    if labels is None:
        labels = torch.arange(n) % num_classes  # (n,)
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or tuple(labels.shape) != (n,):
        raise ValueError(f"labels must be an int64 tensor of shape ({n},), got "
                         f"{tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__}"
                         f"{' ' + str(labels.dtype) if isinstance(labels, torch.Tensor) else ''}")
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ValueError(f"labels must be in [0, {num_classes}), got values in [{int(labels.min())}, "
                         f"{int(labels.max())}]")
    with torch.no_grad():
        chunks = [generator(zb.to(device), yb.to(device)).cpu()
                  for zb, yb in zip(z.split(batch_size), labels.split(batch_size))]
    return torch.cat(chunks)  # (n, *sample_shape)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m torchgan_lite.sample",
                                description="Sample a grid (or a tensor) from a torchgan_lite checkpoint.")
    p.add_argument("checkpoint", type=Path, help="checkpoint file, e.g. runs/mnist_mlp/checkpoint.pt")
    p.add_argument("--n", type=int, default=64, help="number of samples (default: 64, an 8x8 grid)")
    p.add_argument("--out", type=Path, default=None,
                   help="PNG grid to write (default: samples.png, unless --tensor is given)")
    p.add_argument("--tensor", type=Path, default=None,
                   help="also/instead write the raw samples (n, C, H, W) in [-1, 1] with torch.save")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default: 0)")
    p.add_argument("--nrow", type=int, default=8, help="images per grid row (default: 8)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    p.add_argument("--digit", type=int, default=None,
                   help="conditional checkpoints: draw only this class (default: cycle through the classes)")
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
    from .reporting import save_grid

    args = _parse_args(argv)
    try:
        generator = load_generator(args.checkpoint, device=args.device)
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
