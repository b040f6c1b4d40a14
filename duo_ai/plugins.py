"""A user's own classes in duo-ai: modules imported before a config is read, so their `register` calls take effect.

A module named with `--import MODULE` (found on PYTHONPATH or in the current folder) or listed in
the `duo_ai.plugins` entry-point group of an installed package registers models, policies,
algorithms and env families exactly as duo-ai's own modules do.

One loader for both: a module that cannot be imported, or fails while importing, is one line
naming the module and its error. A name that is not a module name (`mymod.py`, `../mymod`, an
empty one) is refused before anything is imported, so no file runs by a name it was not given.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable
from importlib.metadata import entry_points

from duo_ai.core.errors import ConfigError

ENTRY_POINT_GROUP = "duo_ai.plugins"
MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def import_modules(modules: list[str]) -> None:
    """Import each `--import` module; any problem is a one-line `ConfigError` naming the module."""
    for module in modules:
        check_module_name(module)
    if modules and os.getcwd() not in sys.path:
        # `duo-ai --import mymod` in mymod's folder, as `python -m` would find it; appended, so the
        # current folder never shadows an installed module (a stray yaml.py stays unread).
        sys.path.append(os.getcwd())
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name is not None and (module == e.name or module.startswith(e.name + ".")):
                raise ConfigError(
                    f"--import {module}: no module named {module!r}; give an importable module name "
                    "(a .py file's name without .py, in the current folder or on PYTHONPATH)"
                ) from None
            raise ConfigError(f"--import {module}: {failure(e)}") from None
        except Exception as e:  # the module's own code failed: its error, in one line
            raise ConfigError(f"--import {module}: {failure(e)}") from None


def check_module_name(module: str) -> None:
    """A dotted Python module name, not a file's path or name."""
    if MODULE_NAME.fullmatch(module):
        if module.endswith(".py"):
            raise ConfigError(
                f"--import {module}: give the module's name without .py (--import {module.removesuffix('.py')})"
            )
        return
    raise ConfigError(
        f"--import {module!r} is not a module name; give a dotted Python name such as my_models "
        "(a .py file's name without .py, in the current folder or on PYTHONPATH)"
    )


def failure(error: BaseException) -> str:
    """An import's error in one line, with the fix that always applies."""
    first = (str(error).strip().splitlines() or [""])[0]
    return f"importing it failed with {type(error).__name__}: {first}; fix the module or leave it out"


def load_entry_points(warn: Callable[[str], None] | None = None) -> None:
    """Import every module an installed package lists in the `duo_ai.plugins` entry-point group.

    A broken one is reported through `warn` (one line) and skipped: it must not stop `--help`,
    `--version` or the commands that do not need its classes.
    """
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry_point.load()
        except Exception as e:
            if warn is not None:
                warn(f"plugin {entry_point.name} ({entry_point.value}) of {ENTRY_POINT_GROUP} not loaded: {failure(e)}")
