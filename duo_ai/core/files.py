"""Writing files safely: atomic writes, and the one rule for every path a command writes to.

An atomic write sends the data to a temporary file in the same folder, flushes it to disk, then
renames it over the target (a rename within one file system is atomic on POSIX): a crash or a full
disk mid-write leaves the previous file intact and no partial one.

The output-path rule (`check_output_file`, `check_output_folder`), checked before any work starts:
the parent folder must exist (nothing creates folders on the way), an existing path must be a
regular file (a folder, device, pipe, socket or symbolic link is never replaced), and the folder
must accept a new file (tried, not guessed from permission bits: root ignores them, /proc does not).
No output replaces a checkpoint or a file a run folder owns (its config.yaml, summary.json, logs,
checkpoints...): `eval --json RUN/config.yaml` would break the run's `--resume`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from duo_ai.core.errors import ConfigError, OutputError

# The files a run folder owns (training writes them; `--resume` and the reports read them), beside
# its best_<split>.ckpt and everything under checkpoints/.
RUN_FILES = (
    "config.yaml", "run_info.json", "summary.json", "train.log", "progress.csv", "eval.csv", "last.ckpt",
    "run.lock", "base_penalty.json",
)  # fmt: skip


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, new: bool = False) -> Iterator[Path]:
    """A temporary path beside `path` to write the new file to; renamed over `path` when the block ends.

    `new`: `path` must not exist; it is created with a hard link, which fails if another process
    made it meanwhile (a check before a rename would let the later writer replace the earlier).

    Any OS failure (a full disk, a read-only file system) is an `OutputError` naming `path`, and
    the temporary file is removed: the target is either the old file or the whole new one.
    """
    path = Path(path)
    refuse_special(path, "output")
    tmp = None
    try:
        # `.<name>.<random>.tmp<suffix>`: the real suffix last, for writers that choose a format by it
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; use the usual permissions
        os.close(fd)
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        refuse_special(path, "output")  # it may have appeared while the data was made
        if new:
            os.link(tmp, path)
        else:
            os.replace(tmp, path)
    except FileExistsError:
        raise ConfigError(
            f"{path} appeared while it was being written; nothing was replaced: pass another path"
        ) from None
    except OSError as e:
        raise OutputError(
            f"could not write {path} ({e.strerror or e}); free some space or pass a path on a writable disk"
        ) from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None], new: bool = False) -> None:
    """Call `write(f)` on a temporary file, then rename it to `path` (see `atomic_path`)."""
    with atomic_path(path, new) as tmp, tmp.open("wb") as f:
        write(f)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def json_lines(data: dict) -> str:
    """`data` as strict JSON with one top-level key per line and each value on its line, lists
    inline: an evaluation's per-episode arrays stay readable key by key without a line per number."""
    items = [f"  {json.dumps(key)}: {json_text(value)}" for key, value in data.items()]
    return "{\n" + ",\n".join(items) + "\n}\n"


def json_text(data: Any, **dumps: Any) -> str:
    """`data` as strict JSON: a value that is not a finite number (the spread of one episode, say)
    is written null, never NaN or Infinity, which JSON does not have and other readers refuse."""
    return json.dumps(_finite(data), allow_nan=False, **dumps)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(v) for key, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def check_output_file(path: str | os.PathLike, what: str) -> Path:
    """Refuse, with a one-line `ConfigError`, a file path a command could not (or must not) write.

    The output-path rule (see the module docstring); nothing is created or changed.
    """
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise ConfigError(_missing_folder(what, path, folder))
    refuse_special(path, what)
    refuse_owned(path, what)
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{what} {path} cannot be written (permission denied); pass another path")
    if not can_create_in(folder):
        raise ConfigError(f"{what} {path} cannot be written ({folder} takes no new files); pass another path")
    return path


def check_output_folder(path: str | os.PathLike, what: str, files: tuple[str, ...]) -> Path:
    """The output-path rule for a folder a command writes `files` into: its parent must exist (the
    folder itself is created), an existing one must be a folder, and each of `files` in it a regular
    file if it exists."""
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not path.is_dir():  # a file, a device, a dangling link...
        raise ConfigError(f"{what} {path} cannot be written: it is not a folder; pass a folder (made if its parent is)")
    if not path.is_dir():
        if not path.parent.is_dir():
            raise ConfigError(_missing_folder(what, path, path.parent))
        if not can_create_in(path.parent):
            raise ConfigError(f"{what} {path} cannot be created (the folder {path.parent} takes no new files)")
        return path
    for name in files:
        check_output_file(path / name, what.replace("folder", "file"))
    return path


def refuse_owned(path: Path, what: str) -> None:
    """Refuse an existing checkpoint, and a file that a run folder owns, as an output."""
    if path.suffix == ".ckpt" and path.exists():
        raise ConfigError(
            f"{what} {path} exists and is a checkpoint, which only training and export write; pass another path"
        )
    folder = path.parent
    run = folder.parent if folder.name == "checkpoints" else folder
    if not ((run / "config.yaml").is_file() and (run / "run_info.json").is_file()):
        return
    if folder != run or path.name in RUN_FILES or (path.name.startswith("best_") and path.suffix == ".ckpt"):
        raise ConfigError(
            f"{what} {path} is a file of the run folder {run}, which only its run writes; pass a path outside it "
            "or another file name"
        )


def refuse_special(path: Path, what: str) -> None:
    """Refuse a path that exists and is not a regular file: writing would replace a device, a pipe, a
    socket, a folder or a link (atomic writes rename over whatever is there)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISREG(mode):
        return
    kind = (
        "a folder" if stat.S_ISDIR(mode)
        else "a symbolic link" if stat.S_ISLNK(mode)
        else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a named pipe" if stat.S_ISFIFO(mode)
        else "a socket" if stat.S_ISSOCK(mode)
        else "not a regular file"
    )  # fmt: skip
    raise ConfigError(f"{what} {path} is {kind}, which duo-ai never replaces; pass the path of a new or regular file")


def check_name_lengths(path: str | os.PathLike, what: str) -> None:
    """Refuse a path with a name over 255 bytes (what file systems allow) before anything is made."""
    for part in Path(path).parts:
        if len(os.fsencode(part)) > 255:
            raise ConfigError(
                f"{what} {str(path)[:60]}... cannot be created (File name too long: a name of "
                f"{len(os.fsencode(part))} bytes, file systems allow 255); choose a shorter one"
            )


def check_writable(path: str | os.PathLike, what: str) -> None:
    """Refuse, with a one-line `ConfigError`, a folder that could not be written or created.

    Nothing is created: an existing path must be a writable folder, a missing one must lie under a
    writable folder (the nearest one that exists).
    """
    path = Path(path)
    problem = None
    if path.exists():
        if not path.is_dir():
            problem = "it is a file, not a folder"
        elif not os.access(path, os.W_OK | os.X_OK):
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


def can_create_in(folder: Path) -> bool:
    """Whether a file can be made in `folder` (tried, not guessed from permission bits: root ignores them)."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".duo-ai-probe-"):
            return True
    except OSError:
        return False


def _missing_folder(what: str, path: Path, folder: Path) -> str:
    if folder.exists() or folder.is_symlink():
        kind = "a file, not a folder" if folder.is_file() else "not a folder"
        return f"{what} {path} cannot be written: {folder} is {kind}; pass a path in an existing folder"
    return f"{what} {path} cannot be written: the folder {folder} does not exist; create it (mkdir -p {folder}) first"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
