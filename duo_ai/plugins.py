"""A user's own classes in duo-ai: modules imported before a config is read, so their `register` calls take effect.

A module named with `--import MODULE` (found on PYTHONPATH or in the current folder) or listed in
the `duo_ai.plugins` entry-point group of an installed package registers models, policies,
algorithms and env families exactly as duo-ai's own modules do.
"""

from __future__ import annotations

import importlib
import os
import sys
from importlib.metadata import entry_points

from duo_ai.core.errors import ConfigError

ENTRY_POINT_GROUP = "duo_ai.plugins"


def import_modules(modules: list[str]) -> None:
    """Import each module; one that cannot be found is a one-line `ConfigError`."""
    if modules and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())  # `duo-ai --import mymod` in mymod's folder, as `python -m` would find it
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name is None or not (module == e.name or module.startswith(e.name + ".")):
                raise  # the module was found; something it imports is missing, and its traceback says what
            raise ConfigError(
                f"--import {module}: no module named {module!r}; give an importable module name "
                "(a .py file's name without .py, in the current folder or on PYTHONPATH)"
            ) from None


def load_entry_points() -> None:
    """Import every module an installed package lists in the `duo_ai.plugins` entry-point group."""
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        entry_point.load()
