"""The one atomic file writer of the package: checkpoints, reports and metric caches all go through it.

``atomic_open(path)`` yields a file object on a temporary file beside ``path``; when
the ``with`` block ends without an error the file is flushed, fsync'ed and renamed
over ``path`` with ``os.replace`` (atomic on POSIX and Windows), then the folder is
fsync'ed. A process killed at any moment leaves either the old ``path`` or the new
one, never a torn file. On an error the temporary file is removed and ``path`` is
untouched; an ``OSError`` (a full disk, a read-only or forbidden folder) is raised
again as the same kind of ``OSError`` naming ``path`` and the cause in words
(``ENOSPC``: "no space left on device"). A full disk's message also says how much had
been written and how much space was free when the write failed, measured before the
temporary file was removed, and how much is free after. An ``OSError`` that a writer
such as ``torch.save`` turned into another exception (torch reports a failed write as
``RuntimeError: ... unexpected pos``, the ``OSError`` as its context) is found in the
exception's chain and reported the same way.

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
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "atomic_open", "describe_os_error", "fsync_dir", "link_or_copy", "remove_stale_temporaries", "temporary_name"
]

_SUFFIX = ".tmp"
_FULL = (errno.ENOSPC, errno.EDQUOT)


def describe_os_error(err: OSError) -> str:
    """The cause of ``err`` in words with its symbol, e.g. ``"no space left on device (ENOSPC)"``."""
    if err.errno is None:
        return str(err) or type(err).__name__
    words = os.strerror(err.errno)
    words = words[:1].lower() + words[1:]
    return f"{words} ({errno.errorcode.get(err.errno, err.errno)})"


def _os_error_in(err: BaseException) -> OSError | None:
    """``err`` if it is an ``OSError``, else the first one in its chain of causes and contexts (or None)."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _free(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _named_error(path: Path, action: str, err: OSError, space: str = "") -> OSError:
    # OSError(errno, ...) picks the subclass (PermissionError, ...), so `except PermissionError` still works.
    message = f"cannot {action} {path}: {describe_os_error(err)}; the file there (if any) is unchanged{space}"
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


def link_or_copy(src: Path, dst: Path, stage_beside: Path | None = None) -> None:
    """Atomically make ``dst`` the same file as ``src``: a hard link (or a durable copy) to a temporary, renamed
    over ``dst``. ``src`` stays where it is, so at every moment both names hold a complete file.

    Args:
        src: An existing file.
        dst: The name to (re)place.
        stage_beside: The temporary is named after this file (default ``dst``), so that the next
            :func:`atomic_open` of it removes a temporary a killed process left.
    """
    with contextlib.suppress(OSError):
        if os.path.samefile(src, dst):
            return  # already the same file: nothing to do
    staged = temporary_name(stage_beside if stage_beside is not None else dst)
    try:
        try:
            os.link(src, staged)
        except OSError as err:
            if err.errno in (*_FULL, errno.EROFS):
                raise
            shutil.copy2(src, staged)  # a filesystem without hard links: a copy, made durable
            fd = os.open(staged, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(staged, dst)
    finally:
        # Gone after a rename, unless the rename had nothing to do (POSIX: two links to one file).
        with contextlib.suppress(OSError):
            os.unlink(staged)


def _space_report(err: OSError, tmp: Path | None, folder: Path) -> tuple[str, int | None]:
    """For a full disk: what had been written and the free space, measured now (before the partial file goes)."""
    if err.errno not in _FULL:
        return "", None
    written = None
    if tmp is not None:
        with contextlib.suppress(OSError):
            written = tmp.stat().st_size
    free = _free(folder)
    parts = []
    if written is not None:
        parts.append(f"{_mib(written)} had been written when the write failed")
    parts.append(f"{_mib(free)} free at the time of the failure" if free is not None else "free space unknown")
    return "; " + ", ".join(parts), written


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", *, encoding: str | None = None,
                newline: str | None = None, what: str = "write") -> Iterator[IO[Any]]:
    """Open a temporary file for writing; on success it replaces ``path`` atomically.

    Args:
        path: The target file; its folder is created.
        mode: ``"wb"`` or ``"w"`` (text, with ``encoding`` and ``newline`` as for ``open``).
        encoding: Text encoding (text mode only; UTF-8 when None).
        newline: As for ``open`` (``""`` for the ``csv`` module).
        what: The verb of error messages ("save the checkpoint", ...).

    Raises:
        OSError: of the same kind as the failure, naming ``path`` and its cause (for a full disk, also
            the bytes written and the free space when it failed, and after the cleanup); ``path`` is
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
        os.replace(tmp, path)
        tmp = None
        fsync_dir(path.parent)
    except (OSError, RuntimeError) as err:  # RuntimeError: torch's writer, with the OSError in its context
        cause = _os_error_in(err)
        if cause is None:
            raise
        space, written = _space_report(cause, tmp, path.parent)
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            tmp = None
            if written is not None:
                after = _free(path.parent)
                space += f" ({_mib(after)} free after removing the partial file)" if after is not None else ""
        raise _named_error(path, what, cause, space) from err
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
