"""What the three command-line tools share: exit statuses, argparse types, and one error boundary.

Every command's ``main`` is wrapped by :func:`entry_point`, the one place a mistake becomes
one ``error: ...`` line on stderr instead of a traceback:

- a bad option value is refused by argparse itself (the types below, :class:`Parser`);
- a ``ValueError``, ``TypeError`` or ``OSError`` raised anywhere while the command sets
  itself up (checking options, seeding, creating output folders, loading a checkpoint or
  the data, writing a file) ends the command with :data:`EXIT_USAGE`; so does a
  :class:`CLIError`, which carries its own status (:data:`EXIT_FAILED` for a failure while
  training, such as a full disk);
- ``main`` returns the status (argparse's own exits, ``--help`` included, are turned into a
  returned status too), so ``sys.exit(main())`` and tests calling ``main([...])`` see the same.

A new option therefore cannot escape the boundary: whatever its value makes the library
raise reaches :func:`entry_point`. ``TORCHGAN_LITE_DEBUG=1`` in the environment re-raises
instead, for a developer who wants the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, ParamSpec

__all__ = [
    "DEBUG_ENV_VAR", "EXIT_FAILED", "EXIT_USAGE", "SEED_LIMIT", "CLIError", "Parser", "about_option", "entry_point",
    "error_line",
    "non_negative_int", "output_dir", "output_file", "path_arg", "positive_float", "positive_int", "seed",
    "unit_fraction"
]

#: Exit status of a command-line mistake (argparse's own).
EXIT_USAGE = 2
#: Exit status of a run that failed while training (a full disk, a NaN loss...).
EXIT_FAILED = 1
#: ``--seed`` takes ``0 <= S < SEED_LIMIT``: what :func:`torchgan_lite.seed_everything` (NumPy's seed) accepts.
SEED_LIMIT = 2**32
#: Set to 1 to get the traceback of an error instead of its one line.
DEBUG_ENV_VAR = "TORCHGAN_LITE_DEBUG"

_P = ParamSpec("_P")


class CLIError(Exception):
    """A mistake or a failure that ends the command with one ``error:`` line (not a traceback).

    Args:
        message: The line, without ``error:``.
        status: The exit status (:data:`EXIT_USAGE` for a mistake, :data:`EXIT_FAILED` for a failed run).
    """

    def __init__(self, message: str, status: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.status = status


class Parser(argparse.ArgumentParser):
    """argparse, with its mistakes reported as one ``error:`` line (the usage is on ``--help``)."""

    def error(self, message: str) -> NoReturn:
        one_line = " ".join(part.strip() for part in message.splitlines() if part.strip())
        self.exit(EXIT_USAGE, f"error: {one_line} (see {self.prog} --help)\n")


# --------------------------------------------------------------------------- the error boundary


def error_line(err: BaseException) -> str:
    """``err`` as one line: its message with newlines folded; an ``OSError`` as ``path: cause``."""
    if isinstance(err, OSError) and err.strerror:
        text = f"{err.filename}: {err.strerror}" if err.filename and str(err.filename) not in err.strerror \
            else err.strerror
    else:
        text = str(err)
    text = " ".join(part.strip() for part in text.splitlines() if part.strip())
    return text or type(err).__name__


def _report(err: BaseException, status: int) -> int:
    sys.stdout.flush()
    print(f"error: {error_line(err)}", file=sys.stderr, flush=True)
    return status


def entry_point(main: Callable[_P, int]) -> Callable[_P, int]:
    """Wrap a command's ``main`` so that every mistake ends in one ``error:`` line and a status.

    ``CLIError`` exits with its status; ``ValueError``, ``TypeError`` and ``OSError`` with
    :data:`EXIT_USAGE`; a ``SystemExit`` (argparse's) becomes the returned status. Anything
    else (a bug) keeps its traceback.
    """

    @functools.wraps(main)
    def wrapped(*args: _P.args, **kwargs: _P.kwargs) -> int:
        debug = os.environ.get(DEBUG_ENV_VAR, "") not in ("", "0")
        try:
            return main(*args, **kwargs)
        except SystemExit as exit_:
            code = exit_.code
            if code is None or isinstance(code, int):
                return int(code or 0)
            print(code, file=sys.stderr, flush=True)
            return EXIT_USAGE
        except CLIError as err:
            if debug:
                raise
            return _report(err, err.status)
        except (ValueError, TypeError, OSError) as err:
            if debug:
                raise
            return _report(err, EXIT_USAGE)

    return wrapped


@contextlib.contextmanager
def about_option(flag: str, value: object) -> Iterator[None]:
    """Within the block, a ``ValueError``, ``TypeError`` or ``OSError`` becomes a :class:`CLIError` naming
    the option: ``--tensor out/s.pt: cannot write ...: no space left on device``.

    For the work one option's value drives (loading ``--data``, writing ``--json``), so that the
    one line says which option to change.
    """
    try:
        yield
    except (ValueError, TypeError, OSError) as err:
        raise CLIError(f"{flag} {value}: {error_line(err)}") from err


# --------------------------------------------------------------------------- argparse types


def _number(text: str, convert: Callable[[str], Any], ok: Callable[[Any], bool], expected: str) -> Any:
    try:
        value = convert(text)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text.strip()}")
    return value


def positive_int(text: str) -> int:
    """An ``argparse`` type: a whole number >= 1, else a one-line error naming the text."""
    return int(_number(text, int, lambda v: v >= 1, "a whole number >= 1"))


def non_negative_int(text: str) -> int:
    """An ``argparse`` type: a whole number >= 0."""
    return int(_number(text, int, lambda v: v >= 0, "a whole number >= 0"))


def positive_float(text: str) -> float:
    """An ``argparse`` type: a finite number > 0."""
    return float(_number(text, float, lambda v: math.isfinite(v) and v > 0, "a finite number > 0"))


def unit_fraction(text: str) -> float:
    """An ``argparse`` type: a number in [0, 1) (a decay, a probability that cannot be 1)."""
    return float(_number(text, float, lambda v: 0 <= v < 1, "a number in [0, 1)"))


def seed(text: str) -> int:
    """An ``argparse`` type: a whole number in [0, 2**32), the seeds every RNG of the library takes."""
    return int(_number(text, int, lambda v: 0 <= v < SEED_LIMIT, "a whole number in [0, 2**32)"))


def path_arg(text: str) -> Path:
    """An ``argparse`` type: a non-empty path."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return Path(text)


def output_file(text: str) -> Path:
    """An ``argparse`` type: a path to write a file to (not empty, not an existing folder).

    Whether the folder can be written is found out when the file is written, and reported
    by :func:`entry_point` as one line naming the path and the cause.
    """
    path = path_arg(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; expected a file name (e.g. {path / 'out'})")
    return path


def output_dir(text: str) -> Path:
    """An ``argparse`` type: a folder to write into (not empty, not an existing file)."""
    path = path_arg(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder: give a folder for the outputs")
    return path
