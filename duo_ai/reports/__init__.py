"""Looking at results: learning curves (`plot`), episode videos (`video`), multi-seed tables (`compare`).

These are job modules at the top of the package: they read run folders and checkpoints written by
`duo-ai train`, and may import anything below. Their plotting and video libraries are optional
(`pip install 'duo-ai[plots]'`); `require` turns a missing one into a one-line error.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from pathlib import Path
from types import ModuleType

from duo_ai.core.errors import ConfigError


def require(module: str, command: str, package: str | None = None) -> ModuleType:
    """Import an optional library, or raise a one-line error that says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        name = package or module.split(".")[0]
        raise ConfigError(f"duo-ai {command} needs {name}; install with: pip install 'duo-ai[plots]'") from None


def check_output(path: str | os.PathLike, suffixes: tuple[str, ...], option: str = "-o") -> Path:
    """An output file path that can be written: a known suffix, in a folder we may create and write."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise ConfigError(f"{option} {path}: unknown file type; end the name with one of {', '.join(suffixes)}")
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder; pass a file name such as {path / ('out' + suffixes[0])}")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not (folder.is_dir() and _can_create_in(folder)) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"{option} {path} cannot be written there; choose a path in a folder you can write")
    return path


def prepare_output(path: Path) -> Path:
    """Create the output's folder (checked by `check_output` beforehand)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _can_create_in(folder: Path) -> bool:
    """Whether a file can be made in `folder` (tried, not guessed from permission bits: root ignores them)."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".duo-ai-probe-"):
            return True
    except OSError:
        return False
