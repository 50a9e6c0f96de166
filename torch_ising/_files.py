"""Atomic file writes shared by :meth:`StateSpaceResult.save` and the experiment's outputs.

A file is written whole or not at all: the content goes to a temporary file in the
destination's folder, which is then renamed over the destination. The temporary file is
opened with mode 0o666, so the kernel applies the process's umask to it exactly as to a file
made by ``open(path, "wb")``; the umask is never read or changed (changing it, even for a
moment, races with other threads that create files).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO

__all__ = ["atomic_write", "create_new"]

#: how many random temporary names to try before giving up
_TRIES = 100


def create_new(path: str | os.PathLike) -> int:
    """Create ``path`` (it must not exist) for writing, with the mode 0o666 & ~umask.

    Returns:
        an open file descriptor.

    Raises:
        FileExistsError: when ``path`` exists.
    """
    return os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_BINARY", 0), 0o666)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Write a file atomically: ``write(fh)`` fills a temporary file, then it is renamed to ``path``.

    Args:
        path: destination; its directory is created when missing.
        write: callback that writes the content into the binary file handle it is given.

    Returns:
        the destination path.

    Raises:
        whatever ``write`` raises (KeyboardInterrupt included); the temporary file is removed and
        ``path`` keeps its old content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(_TRIES):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = create_new(tmp)
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 100 random 48-bit names all taken
        raise FileExistsError(f"could not create a temporary file next to {path}")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    return path
