"""A class-conditional GAN on MNIST: ask for a digit, get that digit.

The reference recipe's networks (``--arch mlp``; or a DCGAN, ``--arch dcgan``) told the
class: the generator concatenates a label embedding to its noise, the discriminator is a
projection discriminator (docs/conditional.md). This is ``torchgan-lite-train
--conditional`` with its own defaults: the improved recipe (Adam betas (0.5, 0.999), real
label 0.9, a generator EMA that the grids, the metrics and the checkpoint's sampler use)
for 30 epochs. The options are shared with examples/mnist_mlp.py (``--help``).

    python examples/mnist_conditional.py                       # 30 epochs, the improved recipe
    python examples/mnist_conditional.py --epochs 5            # a short look
    python examples/mnist_conditional.py --arch dcgan --epochs 5
    python examples/mnist_conditional.py --max-steps 50 --out /tmp/smoke   # a smoke run
    python examples/mnist_conditional.py --eval-every 5        # FD/KID/coverage + class accuracy

Outputs in --out (default runs/mnist_conditional), as the reference example's plus the digit
grids: samples_epoch_NNN.png / samples_final.png (8x8, fixed noise and labels),
digits_epoch_NNN.png / digits_final.png (10x10, row d shows digit d, column j the same
noise). Draw a chosen digit from the checkpoint with
``torchgan-lite-sample runs/mnist_conditional/checkpoint.pt --digit 7``.
"""

from __future__ import annotations

import sys

from torchgan_lite.cli import train


def main(argv: list[str] | None = None) -> int:
    """Train the conditional GAN with this script's defaults; returns the exit status."""
    return train.main(argv, defaults=train.CONDITIONAL)


if __name__ == "__main__":
    sys.exit(main())
