"""What every actor-critic model returns, and how a model config becomes a model."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from duo_ai.core.errors import ConfigError
from duo_ai.core.registry import MODELS


class ModelOutput(NamedTuple):
    """One forward pass: action logits [B, A], state value [B], features [B, H]."""

    logits: torch.Tensor
    value: torch.Tensor
    hidden: torch.Tensor


def layer_init(layer: nn.Module, gain: float = float(np.sqrt(2)), bias: float = 0.0) -> nn.Module:
    """Orthogonal weights and constant bias: the PPO-standard initialisation."""
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.constant_(layer.bias, bias)
    return layer


class ActorCriticHeads(nn.Module):
    """Policy head (gain 0.01, so the first policy is near uniform) and value head (gain 1)."""

    def __init__(self, in_features: int, num_actions: int) -> None:
        super().__init__()
        self.policy = layer_init(nn.Linear(in_features, num_actions), gain=0.01)
        self.value = layer_init(nn.Linear(in_features, 1), gain=1.0)

    def forward(self, hidden: torch.Tensor) -> ModelOutput:
        return ModelOutput(self.policy(hidden), self.value(hidden).squeeze(-1), hidden)


def num_actions_of(action_space: gym.Space) -> int:
    if not isinstance(action_space, gym.spaces.Discrete):
        raise ConfigError(f"duo-ai models need a Discrete action space, got {action_space}")
    return int(action_space.n)


def model_config_from(model: Any) -> Any:
    """Turn a model name or a dict with `name` into that model's config dataclass."""
    if dataclasses.is_dataclass(model) and not isinstance(model, type):
        return model
    if isinstance(model, str):
        return MODELS.get(model).config_cls()
    if isinstance(model, dict):
        if "name" not in model:
            raise IndexError("model config dict needs a 'name' key naming the model")
        cls = MODELS.get(model["name"]).config_cls
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(model) - known)
        if unknown:
            raise ConfigError(
                f"unknown key(s) {', '.join(unknown)} for model {model['name']!r}; "
                f"valid keys: {', '.join(sorted(known))}"
            )
        return cls(**model)
    raise ValueError(f"model must be a model name or a dict with 'name', got {type(model).__name__}")


def build_model(config: Any, observation_space: gym.Space, action_space: gym.Space) -> nn.Module:
    """Instantiate the registered model class for `config.name`."""
    return MODELS.get(config.name)(config, observation_space, action_space)


class EncoderPPOModel(nn.Module):
    """A base agent: an encoder of the observation (`make_encoder`, with an `output_size`), then policy
    and value heads. Subclasses set `config_cls`, `coordinator` (the model to name for a coordination
    env) and build the encoder."""

    config_cls: type
    coordinator: str

    def make_encoder(self, obs_shape: tuple[int, ...]) -> nn.Module:
        raise NotImplementedError

    def __init__(self, config: Any, observation_space: gym.Space, action_space: gym.Space):
        super().__init__()
        if not isinstance(observation_space, gym.spaces.Box):
            raise ConfigError(
                f"model {config.name} needs array observations, got {type(observation_space).__name__}; "
                f"for a coordination environment use {self.coordinator}"
            )
        self.config = config
        self.encoder = self.make_encoder(observation_space.shape)
        self.heads = ActorCriticHeads(self.encoder.output_size, num_actions_of(action_space))

    def forward(self, obs: torch.Tensor) -> ModelOutput:
        return self.heads(self.encoder(obs))
