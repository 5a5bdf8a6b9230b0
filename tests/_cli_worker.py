"""The training command on tiny synthetic data and networks: the seams tests/test_cli.py injects.

Imported by the tests, which call ``train.main(argv, data=fake_data, networks=tiny_networks)``
in process; also run as a script, one process per rank with torchrun's variables in the
environment, for the command's data-parallel resume test:

    python tests/_cli_worker.py --out DIR --batch-size 16 ...   # any torchgan-lite-train options

The data is the same 64 images of 1x4x4 on every rank, independent of any seed; the
networks have no dropout, so W processes x batch B compute what 1 process x batch W*B
does, up to float round-off.
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch import nn

from torchgan_lite.cli import train
from torchgan_lite.nets import conditional, mlp

__all__ = ["COMMAND", "N_IMAGES", "fake_data", "main", "tiny_networks"]

N_IMAGES = 64
#: The prefix of the resume command the tests expect to be printed.
COMMAND = ["python-under-test", "train"]


def fake_data(args: argparse.Namespace, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """64 images ``(64, 1, 4, 4)`` in [-1, 1] and their labels ``(64,)`` (0..9 in turn) for conditional runs."""
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(N_IMAGES, 1, 4, 4, generator=gen) * 2 - 1  # (64, 1, 4, 4)
    labels = torch.arange(N_IMAGES) % 10  # (64,)
    return images.to(device), (labels.to(device) if args.conditional else None)


def tiny_networks(args: argparse.Namespace) -> tuple[nn.Module, nn.Module]:
    """MLPs with one hidden layer of 16 and no dropout, conditional when ``--conditional`` says so."""
    if args.conditional:
        return (conditional.conditional_mlp_generator(10, latent_dim=8, hidden=(16,), out_shape=(1, 4, 4)),
                conditional.conditional_mlp_discriminator(10, in_shape=(1, 4, 4), hidden=(16,)))
    return (mlp.mlp_generator(latent_dim=8, hidden=(16,), out_shape=(1, 4, 4)),
            mlp.mlp_discriminator(in_shape=(1, 4, 4), hidden=(16,), dropout=0.0))


def main(argv: list[str]) -> int:
    """Train through the command with the tiny seams; returns its exit status."""
    torch.set_num_threads(1)
    return train.main(argv, command=COMMAND, data=fake_data, networks=tiny_networks)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
