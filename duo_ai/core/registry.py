"""Name -> class registries, so a YAML `name:` field maps one-to-one onto a class."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from duo_ai.core.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named table of classes, filled by the `register` decorator."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def decorator(cls: type[T]) -> type[T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = cls
            return cls

        return decorator

    def get(self, name: str) -> type[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(sorted(self._entries))}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)


MODELS: Registry = Registry("model")
POLICIES: Registry = Registry("policy")
ALGORITHMS: Registry = Registry("algorithm")
