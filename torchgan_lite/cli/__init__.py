"""The command-line tools ``torchgan-lite-train``, ``-sample`` and ``-evaluate``, each a small module over shared
parts: ``common`` (exit statuses, argparse types, the one error boundary every ``main`` is wrapped in), ``options``
(the training options), ``resume`` (which checkpoint ``--resume`` means, through the library's ``latest_checkpoint``,
and whether it may be resumed), ``sources`` (the default data and networks, seams of the run), ``run`` (one training
run) and ``outputs`` (its reports and messages). Nothing in the library imports ``cli``.
"""

__all__: list[str] = []
