"""The one atomic file writer of the package: checkpoints, reports and metric caches all go through it.

``atomic_open(path)`` yields a file object on a temporary file beside ``path``; when
the ``with`` block ends without an error the file is flushed, fsync'ed and renamed
over ``path`` with ``os.replace`` (atomic on POSIX and Windows), then the folder is
fsync'ed. A process killed at any moment leaves either the old ``path`` or the new
one, never a torn file. On an error the temporary file is removed and ``path`` is
untouched; an ``OSError`` (a full disk, a read-only or forbidden folder) is raised
again as the same kind of ``OSError`` naming ``path`` and the cause in words
(``ENOSPC``: "no space left on device").

Temporary files are named ``.NAME.HOST-PID.RANDOM.tmp`` and created with mode
``0o666`` so the kernel applies the umask: a written file has the permissions any
other new file would have (``tempfile.mkstemp`` would make it 0600). A temporary
left by a writer that was killed is removed by the next write of the same ``path``
on the same host once that process no longer exists.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "atomic_open", "copy_durably", "describe_os_error", "fsync_dir", "link_or_copy", "remove_stale_temporaries",
    "temporary_name"
]

_SUFFIX = ".tmp"


def describe_os_error(err: OSError) -> str:
    """The cause of ``err`` in words with its symbol, e.g. ``"no space left on device (ENOSPC)"``."""
    if err.errno is None:
        return str(err) or type(err).__name__
    words = os.strerror(err.errno)
    words = words[:1].lower() + words[1:]
    return f"{words} ({errno.errorcode.get(err.errno, err.errno)})"


def _named_error(path: Path, action: str, err: OSError) -> OSError:
    # OSError(errno, ...) picks the subclass (PermissionError, ...), so `except PermissionError` still works.
    message = f"cannot {action} {path}: {describe_os_error(err)}; the file there (if any) is unchanged"
    return OSError(message) if err.errno is None else OSError(err.errno, message)


def temporary_name(path: Path) -> Path:
    """A fresh temporary name beside ``path``: ``.NAME.HOST-PID.RANDOM.tmp``."""
    return path.with_name(f".{path.name}.{socket.gethostname()}-{os.getpid()}.{secrets.token_hex(4)}{_SUFFIX}")


def _create(path: Path) -> tuple[int, Path]:
    """Create a new empty temporary file beside ``path`` with mode 0o666 & ~umask; returns (fd, name)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = temporary_name(path)
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no free temporary name beside {path}")  # pragma: no cover


def remove_stale_temporaries(path: Path) -> None:
    """Delete temporaries of ``path`` left by writers on this host whose process no longer exists."""
    prefix, host = f".{path.name}.", socket.gethostname()
    try:
        candidates = [p for p in path.parent.iterdir() if p.name.startswith(prefix) and p.name.endswith(_SUFFIX)]
    except OSError:
        return
    for p in candidates:
        middle = p.name[len(prefix) : -len(_SUFFIX)]  # HOST-PID.RANDOM
        owner, _, _ = middle.rpartition(".")
        owner_host, _, pid = owner.rpartition("-")
        if owner_host != host or not pid.isdigit() or _pid_alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            os.unlink(p)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists (another user's); anything else: assume alive
        return True
    return True


def fsync_dir(folder: Path) -> None:
    """Make renames in ``folder`` durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def copy_durably(src: Path, dst: Path) -> None:
    """Copy ``src`` (content and modification time) to ``dst`` and fsync it."""
    shutil.copy2(src, dst)
    fd = os.open(dst, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def link_or_copy(src: Path, dst: Path) -> None:
    """Atomically make ``dst`` a copy of ``src``: a hard link (or a durable copy) to a temporary, renamed over ``dst``.

    ``src`` stays where it is, so at every moment both names hold a complete file.
    """
    with contextlib.suppress(OSError):
        if os.path.samefile(src, dst):
            return  # already the same file (a duplicate a killed rotation left): nothing to move
    staged = temporary_name(dst)
    try:
        try:
            os.link(src, staged)
        except OSError as err:
            if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
                raise
            copy_durably(src, staged)  # a filesystem without hard links
        os.replace(staged, dst)
    finally:
        # Gone after a rename, unless the rename had nothing to do (POSIX: two links to one file).
        with contextlib.suppress(OSError):
            os.unlink(staged)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", *, encoding: str | None = None,
                newline: str | None = None, before_replace: Callable[[], None] | None = None,
                what: str = "write") -> Iterator[IO[Any]]:
    """Open a temporary file for writing; on success it replaces ``path`` atomically.

    Args:
        path: The target file; its folder is created.
        mode: ``"wb"`` or ``"w"`` (text, with ``encoding`` and ``newline`` as for ``open``).
        encoding: Text encoding (text mode only; UTF-8 when None).
        newline: As for ``open`` (``""`` for the ``csv`` module).
        before_replace: Called once the new content is durable, just before the rename
            (checkpoint rotation shifts the older copies there).
        what: The verb of error messages ("save the checkpoint", ...).

    Raises:
        OSError: of the same kind as the failure, naming ``path`` and its cause; ``path`` is
            unchanged and no temporary file is left.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        fd, tmp = _create(path)
        if mode == "w":
            f: IO[Any] = os.fdopen(fd, "w", encoding=encoding or "utf-8", newline=newline)
        else:
            f = os.fdopen(fd, "wb")
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
        tmp = None
        fsync_dir(path.parent)
    except OSError as err:
        raise _named_error(path, what, err) from err
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
