"""A small MLP actor-critic for flat observations (classic control), to test PPO itself."""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from duo_ai.core.checks import Rule, checked
from duo_ai.core.errors import ConfigError
from duo_ai.core.registry import MODELS
from duo_ai.models.base import ActorCriticHeads, ModelOutput, layer_init, num_actions_of


@dataclass
class MlpPPOModelConfig:
    name: str = "mlp_ppo"
    hidden_sizes: list[int] = checked(factory=lambda: [64, 64], nonempty=True, each=Rule(ge=1))


@MODELS.register("mlp_ppo")
class MlpPPOModel(nn.Module):
    """Separate tanh MLP trunks for actor and critic, as in the classic PPO setup."""

    config_cls = MlpPPOModelConfig

    def __init__(self, config: MlpPPOModelConfig, observation_space: gym.Space, action_space: gym.Space):
        super().__init__()
        if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
            raise ConfigError(f"model mlp_ppo needs flat vector observations, got {observation_space}")
        self.config = config
        in_features = int(np.prod(observation_space.shape))
        self.actor = self._trunk(in_features, config.hidden_sizes)
        self.critic = self._trunk(in_features, config.hidden_sizes)
        self.heads = ActorCriticHeads(config.hidden_sizes[-1], num_actions_of(action_space))

    @staticmethod
    def _trunk(in_features: int, sizes: list[int]) -> nn.Sequential:
        layers: list[nn.Module] = []
        for size in sizes:
            layers += [layer_init(nn.Linear(in_features, size)), nn.Tanh()]
            in_features = size
        return nn.Sequential(*layers)

    def forward(self, obs: torch.Tensor) -> ModelOutput:
        obs = obs.float()
        actor_hidden = self.actor(obs)
        return ModelOutput(
            self.heads.policy(actor_hidden), self.heads.value(self.critic(obs)).squeeze(-1), actor_hidden
        )
