"""`CoordinationPolicy`: what every baseline coordinator shares, and the hooks `calibrate` calls.

A baseline has no network. Its one calibrated parameter (`param`, e.g. `random`'s prob) is stored
in checkpoints as a float64 tensor in `model_state_dict`; `calibrate` asks it to `fit` what it
learns from the novice, lists its `candidates`, and keeps the best on validation.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from duo_ai.core.compute import Compute
from duo_ai.core.errors import CheckpointError, ConfigError
from duo_ai.core.policy import Policy
from duo_ai.policies.ppo import spaces_of


class CoordinationPolicy(Policy):
    """A coordinator without a network. `param` names its calibrated parameter (None: nothing to
    calibrate), and `param_type` is the type of its config field."""

    param: str | None = None
    param_type: type = float

    def __init__(self, config: Any, env: gym.vector.VectorEnv) -> None:
        self.config = config
        self.observation_space, self.action_space = spaces_of(env)
        if (
            not isinstance(self.observation_space, gym.spaces.Dict)
            or "novice_logits" not in self.observation_space.spaces
        ):
            raise ConfigError(
                f"policy {config.name!r} is a coordinator; set train_novice and train_expert to agent checkpoints"
            )

    def setup(self, compute: Compute) -> CoordinationPolicy:
        """Nothing to place: the decisions are cheap CPU arithmetic."""
        return self

    def reset(self, done: np.ndarray) -> None:
        """Stateless: nothing to reset."""

    def train(self) -> None:
        """No training mode: nothing is learned by gradient."""

    def eval(self) -> None:
        """No evaluation mode: nothing is learned by gradient."""

    def get_params(self) -> dict[str, Any]:
        if self.param is None:
            return {}
        return {self.param: torch.tensor(float(getattr(self.config, self.param)), dtype=torch.float64)}

    def set_params(self, params: dict[str, Any]) -> None:
        expected = [] if self.param is None else [self.param]
        if sorted(params) != expected:
            raise CheckpointError(
                f"parameters {sorted(params)} do not fit policy {self.config.name!r} (expects {expected}); "
                "was the checkpoint saved from another policy?"
            )
        if self.param is not None:
            setattr(self.config, self.param, self.param_type(float(params[self.param])))

    def check_env(self, env: gym.vector.VectorEnv, split: str) -> None:
        """Refuse, before any work, the env of `split` if this coordinator cannot act in it; most can."""

    def fit(self, env: gym.vector.VectorEnv, seed: int) -> int:
        """Learn what the coordinator needs before its candidates are listed (`env`: the run's
        training env); returns the env steps spent. Most learn nothing."""
        return 0

    def num_candidates(self) -> int:
        """How many values of `param` calibration tries."""
        return 0

    def candidates(self, env: gym.vector.VectorEnv, rollout_episodes: int, seed: int) -> tuple[list[float], int]:
        """Values of `param` to calibrate over, and the env steps spent finding them."""
        return [], 0
