"""A small CNN for MiniGrid's 7x7 symbolic view, and the PPO agent and coordinator models over it.

The encoder is the one of the `yrc` package's MiniGrid example: two 3x3 convolutions (32 and 64
channels, padding 1, ReLU), then a linear layer to 128 features. The view's cells hold small
indices (object <= 10, colour <= 5, state <= 2), scaled per channel to [0, 1] rather than by 255.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from duo_ai.core.checks import Rule, checked
from duo_ai.core.errors import ConfigError
from duo_ai.core.registry import MODELS
from duo_ai.envs.minigrid import VIEW_MAX
from duo_ai.models.base import EncoderPPOModel, layer_init
from duo_ai.models.coordinator import FEATURE_TYPES, CoordinatorConfig, CoordinatorModel


class GridEncoder(nn.Module):
    """uint8 views [B, 3, H, W] -> features [B, hidden_size]."""

    def __init__(self, obs_shape: tuple[int, ...], channels: list[int], hidden_size: int) -> None:
        super().__init__()
        if len(obs_shape) != 3 or obs_shape[0] != len(VIEW_MAX):
            raise ConfigError(f"the grid encoder needs MiniGrid views [3, H, W], got shape {obs_shape}")
        layers: list[nn.Module] = []
        c = obs_shape[0]
        for out_channels in channels:
            layers += [layer_init(nn.Conv2d(c, out_channels, 3, padding=1)), nn.ReLU()]
            c = out_channels
        self.convs = nn.Sequential(*layers)
        self.fc = layer_init(nn.Linear(c * obs_shape[1] * obs_shape[2], hidden_size))
        self.register_buffer("scale", torch.tensor(VIEW_MAX, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.output_size = hidden_size

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        x = self.convs(views.float() / self.scale)
        return torch.relu(self.fc(torch.flatten(x, 1)))


@dataclass
class MiniGridPPOModelConfig:
    """Grid CNN + policy and value heads, for MiniGrid agents (novice/expert)."""

    name: str = "minigrid_ppo"
    channels: list[int] = checked(factory=lambda: [32, 64], nonempty=True, each=Rule(ge=1))
    hidden_size: int = checked(128, ge=1)


@MODELS.register("minigrid_ppo")
class MiniGridPPOModel(EncoderPPOModel):
    config_cls = MiniGridPPOModelConfig
    coordinator = "minigrid_coord_ppo"

    def make_encoder(self, obs_shape: tuple[int, ...]) -> nn.Module:
        return GridEncoder(obs_shape, list(self.config.channels), self.config.hidden_size)


@dataclass
class MiniGridCoordPPOModelConfig(CoordinatorConfig):
    """Coordinator over MiniGrid views: `obs` features come from its own grid CNN."""

    name: str = "minigrid_coord_ppo"
    feature_type: str = checked("hidden_dist", choices=FEATURE_TYPES)
    channels: list[int] = checked(factory=lambda: [32, 64], nonempty=True, each=Rule(ge=1))
    hidden_size: int = checked(128, ge=1)


@MODELS.register("minigrid_coord_ppo")
class MiniGridCoordPPOModel(CoordinatorModel):
    config_cls = MiniGridCoordPPOModelConfig

    def make_encoder(self, obs_shape: tuple[int, ...]) -> nn.Module:
        return GridEncoder(obs_shape, list(self.config.channels), self.config.hidden_size)
