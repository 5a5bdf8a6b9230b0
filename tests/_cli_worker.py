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
from torchgan_lite.cli.sources import TrainingData
from torchgan_lite.nets import conditional, mlp

__all__ = ["COMMAND", "N_IMAGES", "fake_data", "main", "tiny_networks"]

N_IMAGES = 64
#: The prefix of the resume command the tests expect to be printed.
COMMAND = ["python-under-test", "train"]


def fake_data(args: argparse.Namespace) -> TrainingData:
    """64 images ``(64, 1, 4, 4)`` in [-1, 1] and their labels ``(64,)`` (0..9 in turn), on the CPU."""
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(N_IMAGES, 1, 4, 4, generator=gen) * 2 - 1  # (64, 1, 4, 4)
    labels = torch.arange(N_IMAGES) % 10  # (64,)
    return TrainingData(images, labels, tuple(str(c) for c in range(10)), "fake 4x4 digits")


def tiny_networks(args: argparse.Namespace, shape: tuple[int, int, int],
                  num_classes: int | None) -> tuple[nn.Module, nn.Module]:
    """MLPs with one hidden layer of 16 and no dropout, for images of ``shape`` (conditional with ``num_classes``)."""
    if num_classes is not None:
        return (conditional.conditional_mlp_generator(num_classes, latent_dim=8, hidden=(16,), out_shape=shape),
                conditional.conditional_mlp_discriminator(num_classes, in_shape=shape, hidden=(16,)))
    return (mlp.mlp_generator(latent_dim=8, hidden=(16,), out_shape=shape),
            mlp.mlp_discriminator(in_shape=shape, hidden=(16,), dropout=0.0))


def main(argv: list[str]) -> int:
    """Train through the command with the tiny seams; returns its exit status."""
    torch.set_num_threads(1)
    return train.main(argv, command=COMMAND, data=fake_data, networks=tiny_networks)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
