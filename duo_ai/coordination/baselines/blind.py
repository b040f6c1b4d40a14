"""The coordinators that never look at the state (only at how many envs there are):

- `always`: the same agent acts at every step (`agent: novice` or `expert`);
- `random`: ask the expert with probability `prob`;
- `every_k`: ask the expert at steps 0, k, 2k, ... of each episode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from duo_ai.coordination.baselines.base import CoordinationPolicy
from duo_ai.coordination.env import EXPERT, NOVICE
from duo_ai.core.checks import Rule, checked
from duo_ai.core.registry import POLICIES


@dataclass
class AlwaysPolicyConfig:
    """`agent` acts at every step: `novice` or `expert`."""

    name: str = "always"
    agent: str = checked("novice", choices=("novice", "expert"))


@POLICIES.register("always")
class AlwaysPolicy(CoordinationPolicy):
    config_cls = AlwaysPolicyConfig

    def act(self, obs: Any, temperature: float = 1.0, return_model_output: bool = False) -> torch.Tensor:
        agent = EXPERT if self.config.agent == "expert" else NOVICE
        return torch.full((len(obs["novice_logits"]),), agent, dtype=torch.long)


@dataclass
class RandomPolicyConfig:
    """Ask the expert with probability `prob`; calibration tries each of `candidates`."""

    name: str = "random"
    prob: float = checked(0.5, ge=0, le=1)
    candidates: list[float] = checked(
        factory=lambda: [round(0.1 * i, 1) for i in range(11)], nonempty=True, each=Rule(ge=0, le=1)
    )


@POLICIES.register("random")
class RandomPolicy(CoordinationPolicy):
    config_cls = RandomPolicyConfig
    param = "prob"

    def act(self, obs: Any, temperature: float = 1.0, return_model_output: bool = False) -> torch.Tensor:
        return (torch.rand(len(obs["novice_logits"])) < self.config.prob).long()

    def num_candidates(self) -> int:
        return len(self.config.candidates)

    def candidates(self, env: gym.vector.VectorEnv, rollout_episodes: int, seed: int) -> tuple[list[float], int]:
        return [float(p) for p in self.config.candidates], 0


@dataclass
class EveryKPolicyConfig:
    """Ask the expert at steps 0, k, 2k, ... of each episode (k = 1: always); calibration tries each of `candidates`."""

    name: str = "every_k"
    k: int = checked(4, ge=1)
    candidates: list[int] = checked(factory=lambda: [1, 2, 3, 4, 6, 8, 12, 16, 24, 32], nonempty=True, each=Rule(ge=1))


@POLICIES.register("every_k")
class EveryKPolicy(CoordinationPolicy):
    config_cls = EveryKPolicyConfig
    param = "k"
    param_type = int

    def __init__(self, config: EveryKPolicyConfig, env: gym.vector.VectorEnv) -> None:
        super().__init__(config, env)
        self.steps = np.zeros(env.num_envs, dtype=np.int64)  # each env's step within its episode

    def reset(self, done: np.ndarray) -> None:
        done = np.asarray(done, dtype=bool)
        if done.shape != self.steps.shape:  # another batch of envs: evaluation starts by resetting them all
            self.steps = np.zeros(done.shape, dtype=np.int64)
        self.steps[done] = 0

    def act(self, obs: Any, temperature: float = 1.0, return_model_output: bool = False) -> torch.Tensor:
        ask = self.steps % self.config.k == 0
        self.steps += 1
        return torch.as_tensor(ask).long()

    def num_candidates(self) -> int:
        return len(self.config.candidates)

    def candidates(self, env: gym.vector.VectorEnv, rollout_episodes: int, seed: int) -> tuple[list[float], int]:
        return [float(k) for k in self.config.candidates], 0
