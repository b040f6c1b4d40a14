"""Looking at results: learning curves (`plot`), episode videos (`video`), multi-seed tables (`compare`).

These are job modules at the top of the package: they read run folders and checkpoints written by
`duo-ai train`, and may import anything below. Their plotting and video libraries are optional
(`pip install 'duo-ai[plots]'`); `require` turns a missing one into a one-line error.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from types import ModuleType

from duo_ai.core.errors import ConfigError
from duo_ai.core.files import check_output_file


def require(module: str, command: str, package: str | None = None) -> ModuleType:
    """Import an optional library, or raise a one-line error that says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        name = package or module.split(".")[0]
        raise ConfigError(f"duo-ai {command} needs {name}; install with: pip install 'duo-ai[plots]'") from None


def check_output(path: str | os.PathLike, suffixes: tuple[str, ...], option: str = "-o") -> Path:
    """An output file path with a known suffix that the output-path rule allows (`check_output_file`)."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise ConfigError(f"{option} {path}: unknown file type; end the name with one of {', '.join(suffixes)}")
    if path.is_dir() and not path.is_symlink():
        raise ConfigError(f"{option} {path} is a folder; pass a file name such as {path / ('out' + suffixes[0])}")
    return check_output_file(path, option)


def read_json(path: Path, fix: str) -> object:
    """A JSON file's content; unreadable or invalid JSON is one line naming the file and `fix`."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} cannot be read ({e})") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}); {fix}") from None
