"""pyod's outlier detectors by name: what `ood`'s `policy.detector` may be, and building one.

A detector is named by its module in `pyod.models` (`knn`, `lof`, `iforest`, `ecod`, `deep_svdd`,
...), in any case and with or without underscores (`KNN`, `IForest`, `DeepSVDD`). The names are
read from pyod's files, so a config is checked without importing pyod (which takes seconds); the
class is imported when a coordinator is built. A detector is given what duo-ai knows of those of
its arguments it takes (`n_neighbors`, the number of features, a fixed random state, silence) and
pyod's defaults for the rest; one that needs any other argument, or a library pyod leaves optional,
is refused in one line.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
from functools import cache
from pathlib import Path
from typing import Any

from duo_ai.core.errors import ConfigError

# The arguments duo-ai gives a detector that takes them (`build_detector`); pyod's defaults for the rest.
GIVEN = ("n_neighbors", "n_features", "random_state", "verbose")
OTHERS = "choose another detector (knn, lof, iforest)"
ALLOWED = "a pyod outlier detector's name, its module in pyod.models (e.g. knn, lof, iforest, ecod, deep_svdd)"


@cache
def pyod_modules() -> tuple[str, ...]:
    """The module names of `pyod.models`, from its folder (nothing is imported)."""
    spec = importlib.util.find_spec("pyod")
    if spec is None or not spec.submodule_search_locations:
        return ()
    folders = [str(Path(folder) / "models") for folder in spec.submodule_search_locations]
    return tuple(sorted(m.name for m in pkgutil.iter_modules(folders) if not m.name.startswith("_")))


def _key(name: str) -> str:
    return name.lower().replace("_", "")


def module_of(name: str) -> str | None:
    """The module of `pyod.models` that `name` means (None: none does)."""
    if not isinstance(name, str):
        return None
    return next((m for m in pyod_modules() if _key(m) == _key(name)), None)


def is_detector_name(name: Any) -> bool:
    return module_of(name) is not None


def detector_class(name: str) -> type:
    """The detector class `name` means; a one-line `ConfigError` if pyod cannot give one."""
    module_name = module_of(name)
    if module_name is None:
        raise ConfigError(f"policy.detector={name!r} is not allowed; it must be {ALLOWED}")
    try:
        module = importlib.import_module(f"pyod.models.{module_name}")
    except ImportError as e:
        raise ConfigError(
            f"policy.detector={name}: pyod.models.{module_name} needs {e.name or e}, which is not installed; "
            f"install it, or {OTHERS}"
        ) from None
    from pyod.models.base import BaseDetector

    found = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, BaseDetector)
        and value.__module__ == module.__name__
        and not inspect.isabstract(value)
    ]
    if len(found) > 1:  # a module of several detectors: the one named by its class
        found = [c for c in found if _key(c.__name__) == _key(name)] or found
    if len(found) != 1:
        what = f"holds {len(found)} detectors ({', '.join(c.__name__ for c in found)})" if found else "has no detector"
        raise ConfigError(f"policy.detector={name}: pyod.models.{module_name} {what}; {OTHERS}")
    cls = found[0]
    missing = [
        key
        for key, p in inspect.signature(cls).parameters.items()
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and key not in GIVEN
    ]
    if missing:
        raise ConfigError(
            f"policy.detector={name}: pyod's {cls.__name__} needs {', '.join(missing)}, which duo-ai does not "
            f"give a detector; {OTHERS}"
        )
    return cls


def build_detector(cls: type, n_neighbors: int, n_features: int) -> Any:
    """An unfitted `cls` given those of `GIVEN` it takes; a fixed random state, so a refit scores the same."""
    given = {"n_neighbors": n_neighbors, "n_features": n_features, "random_state": 0, "verbose": 0}
    params = inspect.signature(cls).parameters
    return cls(**{key: value for key, value in given.items() if key in params})


def takes_neighbors(cls: type) -> bool:
    return "n_neighbors" in inspect.signature(cls).parameters
