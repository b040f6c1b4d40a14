"""The `env:` config section: which game, how many copies, which levels, and the evaluation splits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from duo_ai.core.checks import INT32_MAX, checked
from duo_ai.core.registry import Registry
from duo_ai.envs.procgen import DISTRIBUTION_MODES

# Env families (`env.name`) by name; each family module registers its `EnvFamily` here. `env.name`
# is checked against the names registered when the config is checked, a user's own included.
ENVS: Registry = Registry("env family")


@dataclass
class SplitConfig:
    """Level settings of an evaluation split; unset fields inherit the training settings.

    `task` plays another task of the same game in this split: on MiniGrid, another layout (the
    benchmark's realistic setting trains on DistShift1 and tests on DistShift2).
    """

    task: str | None = None
    distribution_mode: str | None = checked(None, choices=DISTRIBUTION_MODES)
    start_level: int | None = checked(None, ge=0, le=INT32_MAX)
    num_levels: int | None = checked(None, ge=0, le=INT32_MAX)


@dataclass
class EnvConfig:
    """The training environment. `name` is the family (procgen, minigrid, gym), `task` the game or env id.

    Levels are `[start_level, start_level + num_levels)` (0 = unlimited) for Procgen and MiniGrid
    alike: a Procgen level, or the seed MiniGrid builds a layout and start from.
    `distribution_mode` and `num_threads` are Procgen's; `kwargs` are MiniGrid's (arguments of the
    env's constructor, e.g. `{agent_start_pos: null}` for random starts on DistShift).
    """

    name: str = checked("procgen", choices=ENVS.names)
    task: str = checked(
        "coinrun", test=bool, allowed="a game name (procgen), a MiniGrid id (minigrid) or a gymnasium id (gym)"
    )
    num_envs: int = checked(32, ge=1)
    distribution_mode: str = checked("easy", choices=DISTRIBUTION_MODES)
    start_level: int = checked(0, ge=0, le=INT32_MAX)
    # 0 = unlimited levels.
    num_levels: int = checked(200, ge=0, le=INT32_MAX)
    # Procgen engine threads; 0 = one per core.
    num_threads: int = checked(0, ge=0)
    kwargs: dict[str, Any] = field(default_factory=dict)
    # Evaluation splits by name; `train` always means the training levels.
    splits: dict[str, SplitConfig] = field(
        default_factory=lambda: {"test": SplitConfig(start_level=100_000, num_levels=0)}
    )
