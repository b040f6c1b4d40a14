"""Declarative value rules for config dataclasses, and the one walker that checks them.

A config field states what it allows next to its default:

    learning_rate: float = checked(5e-4, gt=0)
    gamma: float = checked(0.999, ge=0, le=1)
    distribution_mode: str = checked("easy", choices=DISTRIBUTION_MODES)
    channels: list[int] = checked(factory=lambda: [16, 32, 32], nonempty=True, each=Rule(ge=1))

`check_config(config)` walks a config (nested dataclasses, dicts and lists of them) and raises a
one-line `ConfigError` naming the dotted key, the value and what is allowed. Numbers must also be
finite (a NaN or an infinity is refused wherever a rule applies). `None` passes every rule: an
optional field's rule applies to the values it may take.

A rule that spans sections (PPO's minibatches must divide the rollout of `env.num_envs` envs)
belongs to the class of the `name`-selected section that needs it: `SectionChecks` declares the
hooks, which `duo_ai.config` calls on the whole run config.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from duo_ai.core.errors import ConfigError

RULE = "duo_ai.rule"
INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class Rule:
    """What a value may be: bounds, a set of choices, a non-empty list, a rule for each item, a test."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    # The allowed values, or a function giving them when a value is checked (a registry's names).
    choices: tuple[Any, ...] | Callable[[], tuple[Any, ...]] | None = None
    nonempty: bool = False
    each: Rule | None = None
    test: Callable[[Any], bool] | None = None
    # Words for what `test` accepts, e.g. "a plain folder name".
    allowed: str = ""

    def describe(self) -> str:
        """What the rule allows, in words: '>= 1', 'in [0, 1]', 'one of easy, hard', ..."""
        if self.test is not None:
            return self.allowed
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self._choices()))
        if self.nonempty or self.each is not None:
            items = f" of items each {self.each.describe()}" if self.each is not None else ""
            return ("a non-empty list" if self.nonempty else "a list") + items
        low = (">=", self.ge) if self.ge is not None else (">", self.gt) if self.gt is not None else None
        if low is not None and self.le is not None:
            return f"in {'[' if low[0] == '>=' else '('}{_num(low[1])}, {_num(self.le)}]"
        if low is not None:
            return f"a number {low[0]} {_num(low[1])}"
        return f"a number <= {_num(self.le)}" if self.le is not None else "a finite number"

    def allows(self, value: Any) -> bool:
        if value is None:
            return True
        if self.test is not None:
            return bool(self.test(value))
        if self.choices is not None:
            return value in self._choices()
        if self.nonempty or self.each is not None:
            items = list(value) if isinstance(value, (list, tuple)) else None
            if items is None or (self.nonempty and not items):
                return False
            return self.each is None or all(self.each.allows(item) and item is not None for item in items)
        return _in_range(value, self)

    def _choices(self) -> tuple[Any, ...]:
        return tuple(self.choices()) if callable(self.choices) else self.choices

    def check(self, key: str, value: Any) -> None:
        """Raise a one-line `ConfigError` if `value` (of config key `key`) breaks the rule."""
        if not self.allows(value):
            allowed = self.describe()
            if isinstance(value, float) and not math.isfinite(value):
                allowed = "a finite" + allowed[1:] if allowed.startswith("a number") else f"a finite number {allowed}"
            raise ConfigError(f"{key}={_show(value)} is not allowed; it must be {allowed}")


def checked(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, **rule: Any) -> Any:
    """A dataclass field with a default (or a default `factory`) and the `Rule` its values obey."""
    return dataclasses.field(default=default, default_factory=factory, metadata={RULE: Rule(**rule)})


def check_config(config: Any, path: str = "") -> None:
    """Check every ruled field of the dataclass `config` and of everything nested in it."""
    for f in dataclasses.fields(config):
        key = f"{path}.{f.name}" if path else f.name
        value = getattr(config, f.name)
        rule = f.metadata.get(RULE)
        if rule is not None:
            rule.check(key, value)
        _walk(value, key)


class SectionChecks:
    """The hooks of a `name`-selected config section (an algorithm's, a policy's or the policy's
    model's) whose rules reach into other sections.

    `duo_ai.config` calls them on the built run config, before any work: `resolve` (defaults taken
    from other sections), then `check_run` after every field's own rule, and `check_world_size` when
    the run is launched over several processes. Each raises a one-line `ConfigError` naming the keys
    and the fix. A config class may also define any of them without subclassing this one.
    """

    def resolve(self, config: Any) -> None:
        """Fill this section's defaults that come from other sections of the run `config`."""

    def check_run(self, config: Any) -> None:
        """Refuse a value of this section that does not fit the rest of the run `config`."""

    def check_world_size(self, config: Any, world_size: int) -> None:
        """Refuse a data-parallel run over `world_size` (> 1) processes that this section cannot take."""


def check_options(rules: dict[str, Rule], *values: Any) -> None:
    """Check command-line options (values in the order of `rules`; None = not given) by the same rules
    as config fields: `--fps=nan is not allowed; it must be a finite number in [0.1, 240]`."""
    for (option, rule), value in zip(rules.items(), values, strict=True):
        rule.check(option, value)


def _walk(value: Any, key: str) -> None:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        check_config(value, key)
    elif isinstance(value, dict):
        for name, item in value.items():
            _walk(item, f"{key}.{name}")
    elif isinstance(value, (list, tuple)):
        for item in value:
            _walk(item, key)


def _in_range(value: Any, rule: Rule) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if not math.isfinite(value):
        return False
    if rule.ge is not None and value < rule.ge:
        return False
    if rule.gt is not None and value <= rule.gt:
        return False
    return rule.le is None or value <= rule.le


def _num(x: float) -> str:
    if x == INT32_MAX:
        return "2**31-1"
    return str(int(x)) if x == int(x) else f"{x:g}"  # 1000000, not 1e+06


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)
