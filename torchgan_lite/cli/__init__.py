"""The command-line tools ``torchgan-lite-train``, ``-sample`` and ``-evaluate``: argument parsing,
the run, checkpoint discovery and error reporting. Nothing in the library imports ``cli``.
"""

__all__: list[str] = []
