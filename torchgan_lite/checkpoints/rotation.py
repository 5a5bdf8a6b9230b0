"""Kept checkpoints: step-numbered files beside the newest, found by their names.

``save_checkpoint(obj, "run/checkpoint.pt", keep_last=K)`` writes ``checkpoint.pt``
atomically, then gives the same file a step-numbered name, ``checkpoint-000001200.pt``
(a hard link, so it costs no space; a copy where the filesystem has no hard links),
and removes the numbered files beyond the K + 1 newest steps. So ``checkpoint.pt`` is
always the newest checkpoint, under the name users and docs rely on, and the numbered
files are the newest and the K before it, each named by its step: nothing is renamed,
and a kill at any moment leaves every name holding a complete file (at worst one
numbered file more or less than K + 1, which the next save prunes).

Numbered files from steps *after* the one being saved belong to a continuation that
the run abandoned (it was resumed from an earlier checkpoint); they are removed too,
so the numbered files always read as one run ending at ``checkpoint.pt``. This module
only names and prunes files; :func:`torchgan_lite.checkpoints.format.latest_checkpoint`
finds the newest one that loads.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from torchgan_lite.utils.atomic import describe_os_error, fsync_dir, link_or_copy

__all__ = ["numbered_copies", "numbered_path", "parse_numbered", "rotate"]

_WIDTH = 9  # checkpoint-000001200.pt: sorts by name up to a billion steps (more digits after that)
_NUMBERED = re.compile(rf"^(?P<stem>.+)-(?P<step>\d{{{_WIDTH},}})(?P<suffix>\.[^.]*)?$")


def numbered_path(path: Path, step: int) -> Path:
    """The step-numbered name of ``path`` at ``step``: ``checkpoint.pt`` -> ``checkpoint-000001200.pt``."""
    return path.with_name(f"{path.stem}-{step:0{_WIDTH}d}{path.suffix}")


def parse_numbered(name: str) -> tuple[str, int] | None:
    """``(the name it numbers, step)`` for a step-numbered file name, else None.

    ``"checkpoint-000001200.pt"`` -> ``("checkpoint.pt", 1200)``.
    """
    match = _NUMBERED.match(name)
    if match is None:
        return None
    return match["stem"] + (match["suffix"] or ""), int(match["step"])


def numbered_copies(path: Path) -> list[tuple[int, Path]]:
    """The step-numbered files of ``path`` in its folder, ``(step, file)``, newest step first."""
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return []
    found = []
    for p in entries:
        parsed = parse_numbered(p.name)
        if parsed is not None and parsed[0] == path.name and p.is_file():
            found.append((parsed[1], p))
    return sorted(found, key=lambda item: item[0], reverse=True)


def rotate(path: Path, step: int, keep: int) -> None:
    """Give the just-written ``path`` its numbered name at ``step``; keep the ``keep + 1`` newest numbered files.

    Raises:
        OSError: the numbered name could not be made (``path`` itself is saved; the message says so).
    """
    numbered = numbered_path(path, step)
    try:
        link_or_copy(path, numbered, stage_beside=path)
    except OSError as err:
        message = (f"saved {path}, but cannot keep its numbered copy {numbered.name}: {describe_os_error(err)}; "
                   "the older copies are unchanged")
        raise (OSError(message) if err.errno is None else OSError(err.errno, message)) from err
    fsync_dir(path.parent)
    copies = numbered_copies(path)
    kept = [p for s, p in copies if s <= step]
    stale = [p for s, p in copies if s > step] + kept[keep + 1 :]
    for p in stale:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)
    if stale:
        fsync_dir(path.parent)
