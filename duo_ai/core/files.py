"""Atomic file writes: a crash mid-write leaves the previous file intact.

The data goes to a temporary file in the same folder, is flushed to disk, then renamed over the
target (a rename within one file system is atomic on POSIX).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from duo_ai.core.errors import ConfigError


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call `write(f)` on a temporary file, then rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; use the usual permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def check_writable(path: str | os.PathLike, what: str, folder: bool = False) -> None:
    """Refuse, with a one-line `ConfigError`, a file (or `folder`) path that could not be written.

    Nothing is created: an existing path must be of the right kind and writable, a missing one must
    lie under a writable folder (the nearest one that exists).
    """
    path = Path(path)
    problem = None
    if path.exists():
        if path.is_dir() != folder:
            problem = "it is a folder" if path.is_dir() else "it is a file, not a folder"
        elif not os.access(path if folder else path.parent, os.W_OK | os.X_OK):
            problem = "permission denied"
        elif not folder and not os.access(path, os.W_OK):
            problem = "permission denied"
    else:
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            problem = f"{parent} is a file, not a folder"
        elif not os.access(parent, os.W_OK | os.X_OK):
            problem = f"no permission to create it in {parent}"
    if problem is not None:
        raise ConfigError(f"{what} {path} cannot be written ({problem}); pass another path")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
