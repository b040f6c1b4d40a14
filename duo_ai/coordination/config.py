"""The `coordination.` config section (reference section 5)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from duo_ai.core.checks import checked

AGENT_KEYS = ("train_novice", "train_expert", "test_novice", "test_expert")


# A cost weight is a multiple of the cost unit (base_penalty, per expert step); studies use 0-2. Far
# beyond, an episode's reward is no longer a finite number (1e308 x a penalty): a typo, not a cost.
MAX_COST_WEIGHT = 1e6


@dataclass
class CoordinationConfig:
    """Costs charged to the coordinator and what it observes.

    Each expert call costs `expert_query_cost_weight x base_penalty`; each change of the acting
    agent within an episode costs `switch_agent_cost_weight x base_penalty`. `base_penalty` is the
    expert's reward per step: the mean episode reward / mean episode length of the expert acting
    in `base_penalty_split` (the test expert on the test split, as the benchmark defines it), the
    same unit for every split; null = measure it over `base_penalty_episodes` episodes.
    """

    expert_query_cost_weight: float = checked(0.4, ge=0, le=MAX_COST_WEIGHT)
    switch_agent_cost_weight: float = checked(0.0, ge=0, le=MAX_COST_WEIGHT)
    base_penalty: float | None = checked(None, gt=0)
    base_penalty_episodes: int = checked(500, ge=1)
    base_penalty_split: str = "test"
    # Where every method is selected: calibrate's candidates are compared there (its algorithm.split
    # defaults to this), and a PPO coordinator's pick is its best_<selection_split>.ckpt.
    selection_split: str = "val_true"
    # Sampling temperature of the novice and expert when they act (0 = greedy).
    agent_temperature: float = checked(1.0, ge=0)
    # Also observe the expert's hidden features and logits (runs the expert on every env, every step).
    expert_visible: bool = False
    # Splits whose agents are train_novice/train_expert; every other split uses test_novice/test_expert
    # (falling back to the train ones), so simulated validation never sees the test-time agents.
    # In a coordination run each must be `train` or a split of env.splits (checked in duo_ai.config).
    train_agent_splits: list[str] = field(default_factory=lambda: ["train", "val_sim"])


def is_coordination_run(config: Any) -> bool:
    """Whether the run coordinates a novice and an expert (any agent checkpoint configured)."""
    return any(getattr(config, key) is not None for key in AGENT_KEYS)
