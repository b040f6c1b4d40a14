"""The `env:` config section: which game, how many copies, which levels, and the evaluation splits."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SplitConfig:
    """Level settings of an evaluation split; unset fields inherit the training settings."""

    distribution_mode: str | None = None
    start_level: int | None = None
    num_levels: int | None = None


@dataclass
class EnvConfig:
    """The training environment. `name` is the family (procgen, gym), `task` the game or env id."""

    name: str = "procgen"
    task: str = "coinrun"
    num_envs: int = 32
    distribution_mode: str = "easy"
    start_level: int = 0
    num_levels: int = 200
    # Procgen engine threads; 0 = one per core.
    num_threads: int = 0
    # Evaluation splits by name; `train` always means the training levels.
    splits: dict[str, SplitConfig] = field(
        default_factory=lambda: {"test": SplitConfig(start_level=100_000, num_levels=0)}
    )
