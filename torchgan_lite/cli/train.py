"""The training command line: ``torchgan-lite-train`` / ``python -m torchgan_lite.train``.

One option set for every run of the package: the reference MLP GAN on MNIST
(``examples/mnist_mlp.py`` is this with its defaults), the class-conditional GAN
(``--conditional``; ``examples/mnist_conditional.py``), DCGAN and ResNet networks
(``--arch dcgan|resnet``), any image set (``--data``: a folder of images or a set by name),
the losses and recipes of docs/recipes.md.

    torchgan-lite-train --epochs 3                           # a short look at the reference recipe
    torchgan-lite-train --max-steps 50 --out /tmp/smoke      # a smoke run
    torchgan-lite-train --resume auto                        # carry on from the newest checkpoint in --out
    torchgan-lite-train --conditional --recipe improved      # ask for a digit, get that digit
    torchgan-lite-train --logger tensorboard                 # event files in --out/tensorboard
    torchgan-lite-train --data ./photos --image-size 64 --hflip --out runs/photos   # your own images (DCGAN)
    torchgan-lite-train --data cifar10 --arch resnet --conditional                  # a colour set by name

Operations (docs/quickstart.md): Ctrl-C (SIGINT) and ``kill``/``timeout``/Slurm/``docker stop``
(SIGTERM) finish the step under way, save ``checkpoint.pt``, write ``run.json`` and exit
with 130 (SIGINT) or 143 (SIGTERM), printing the command that resumes. ``--resume auto``
makes the same command line safe to rerun after a preemption: it continues from the
newest valid checkpoint in ``--out``, or starts afresh when there is none. A checkpoint
records the options it was trained with; resuming with other ones is refused before any
training, naming each option that differs (``--lr`` may differ: it changes the learning
rate on resume; the number of processes may differ at the same global batch). A mistake
on the command line ends in one ``error:`` line and exit 2; a failure while training
(e.g. a full disk) in one ``error:`` line and exit 1.

The parts: :mod:`~torchgan_lite.cli.options` (the options), :mod:`~torchgan_lite.cli.resume`
(which checkpoint, and whether it may be resumed), :mod:`~torchgan_lite.cli.run` (the run),
:mod:`~torchgan_lite.cli.sources` (the data and networks), :mod:`~torchgan_lite.cli.outputs`
(what it writes), :mod:`~torchgan_lite.cli.common` (the
error boundary shared with ``sample`` and ``evaluate``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from torchgan_lite.cli import run as run_module
from torchgan_lite.cli.common import EXIT_FAILED, EXIT_USAGE, entry_point
from torchgan_lite.cli.options import CONDITIONAL, REFERENCE, CLIDefaults, build_parser, parse_args
from torchgan_lite.cli.outputs import console_logging
from torchgan_lite.cli.resume import find_checkpoint, resume_command
from torchgan_lite.cli.run import exit_status
from torchgan_lite.cli.sources import DataSource, NetworkBuilder
from torchgan_lite.utils import distributed

__all__ = [
    "CONDITIONAL", "EXIT_FAILED", "EXIT_USAGE", "REFERENCE", "CLIDefaults", "build_parser", "exit_status",
    "find_checkpoint", "main", "parse_args", "resume_command"
]


@entry_point
def main(argv: Sequence[str] | None = None, defaults: CLIDefaults = REFERENCE,
         command: Sequence[str] | None = None, *, data: DataSource | None = None,
         networks: NetworkBuilder | None = None) -> int:
    """Run the command line; returns the exit status.

    Args:
        argv: The options (default ``sys.argv[1:]``).
        defaults: The defaults of the calling script (:data:`REFERENCE`, :data:`CONDITIONAL`).
        command: How the program was started, for the printed resume command
            (default: ``sys.executable`` and the script's path).
        data: Train on this instead of ``--data`` (:data:`torchgan_lite.cli.sources.DataSource`).
        networks: Train these networks instead of ``--arch``'s (:data:`torchgan_lite.cli.sources.NetworkBuilder`).

    Returns:
        0 done; 1 a failure while training; 2 a command-line mistake; 130/143 stopped by SIGINT/SIGTERM.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv, defaults)
    with console_logging():
        try:
            return run_module.run(args, argv, command, data=data, networks=networks)
        finally:
            distributed.shutdown()  # under torchrun: the group the trainer created, torn down before exit


if __name__ == "__main__":
    sys.exit(main())
