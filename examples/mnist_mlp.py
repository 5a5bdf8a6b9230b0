"""The reference recipe: the classic MNIST MLP GAN, trained through torchgan_lite's training CLI.

The defaults are the recipe of docs/reference-recipe.md: MNIST in [-1, 1], batches of 128
(468 an epoch), the MLP generator and discriminator, non-saturating BCE, Adam(2e-4) for
both, one D step then one G step on fresh noise, 200 epochs. The options are those of
``torchgan-lite-train`` (``python examples/mnist_mlp.py --help``), shared with
examples/mnist_conditional.py.

    python examples/mnist_mlp.py                                  # the full recipe
    python examples/mnist_mlp.py --epochs 3                       # a short look
    python examples/mnist_mlp.py --max-steps 50 --out /tmp/smoke  # a smoke run
    python examples/mnist_mlp.py --resume auto                    # carry on from the newest checkpoint
    python examples/mnist_mlp.py --loss wgan-gp                   # WGAN-GP, 5 critic steps
    python examples/mnist_mlp.py --recipe improved                # same networks, better samples (docs/recipes.md)
    python examples/mnist_mlp.py --arch dcgan                     # convolutional networks (torchgan_lite.nets.dcgan)
    python examples/mnist_mlp.py --logger tensorboard             # and: tensorboard --logdir runs

Outputs in --out (default runs/mnist_mlp): samples_epoch_NNN.png and samples_final.png
(8x8 grids from one fixed noise bank), losses.png, history.csv, history.jsonl,
checkpoint.pt, run.json. For your own images, ``torchgan-lite-train --data ./photos
--image-size 64`` (docs/own-images.md).
"""

from __future__ import annotations

import sys

from torchgan_lite.cli import train


def main(argv: list[str] | None = None) -> int:
    """Train with the reference recipe's defaults; returns the exit status."""
    return train.main(argv, defaults=train.REFERENCE)


if __name__ == "__main__":
    sys.exit(main())
