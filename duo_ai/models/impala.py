"""IMPALA CNN (Espeholt et al. 2018) as used by the Procgen paper, and the PPO models over it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from duo_ai.core.checks import Rule, checked
from duo_ai.core.errors import ConfigError
from duo_ai.core.registry import MODELS
from duo_ai.models.base import EncoderPPOModel, layer_init
from duo_ai.models.coordinator import FEATURE_TYPES, CoordinatorConfig, CoordinatorModel, FeatureStandardizer

# FEATURE_TYPES and FeatureStandardizer stay importable from here, where coordinators were first defined.
__all__ = ["FEATURE_TYPES", "FeatureStandardizer", "ImpalaCoordPPOModel", "ImpalaEncoder", "ImpalaPPOModel"]


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(F.relu(self.conv0(F.relu(x))))


class ConvSequence(nn.Module):
    """3x3 conv, 3x3 max-pool with stride 2, two residual blocks: halves H and W."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.res0 = ResidualBlock(out_channels)
        self.res1 = ResidualBlock(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.conv(x), kernel_size=3, stride=2, padding=1)
        return self.res1(self.res0(x))


class ImpalaEncoder(nn.Module):
    """uint8 frames [B, C, H, W] -> features [B, hidden_size]; scales pixels to [0, 1] itself."""

    def __init__(self, obs_shape: tuple[int, ...], channels: list[int], hidden_size: int) -> None:
        super().__init__()
        if len(obs_shape) != 3:
            raise ConfigError(f"the IMPALA encoder needs image observations [C, H, W], got shape {obs_shape}")
        c, h, w = obs_shape
        stacks = []
        for out_channels in channels:
            stacks.append(ConvSequence(c, out_channels))
            c, h, w = out_channels, (h + 1) // 2, (w + 1) // 2
        self.stacks = nn.Sequential(*stacks)
        self.fc = layer_init(nn.Linear(c * h * w, hidden_size))
        self.output_size = hidden_size

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = self.stacks(frames.float() / 255.0)
        return F.relu(self.fc(F.relu(torch.flatten(x, 1))))


@dataclass
class ImpalaPPOModelConfig:
    """IMPALA encoder + policy and value heads, for base (novice/expert) agents."""

    name: str = "impala_ppo"
    channels: list[int] = checked(factory=lambda: [16, 32, 32], nonempty=True, each=Rule(ge=1))
    hidden_size: int = checked(256, ge=1)


@MODELS.register("impala_ppo")
class ImpalaPPOModel(EncoderPPOModel):
    config_cls = ImpalaPPOModelConfig
    coordinator = "impala_coord_ppo"

    def make_encoder(self, obs_shape: tuple[int, ...]) -> nn.Module:
        return ImpalaEncoder(obs_shape, list(self.config.channels), self.config.hidden_size)


@dataclass
class ImpalaCoordPPOModelConfig(CoordinatorConfig):
    """Coordinator over Procgen frames: `obs` features come from its own IMPALA encoder."""

    name: str = "impala_coord_ppo"
    channels: list[int] = checked(factory=lambda: [16, 32, 32], nonempty=True, each=Rule(ge=1))
    hidden_size: int = checked(256, ge=1)


@MODELS.register("impala_coord_ppo")
class ImpalaCoordPPOModel(CoordinatorModel):
    config_cls = ImpalaCoordPPOModelConfig

    def make_encoder(self, obs_shape: tuple[int, ...]) -> nn.Module:
        return ImpalaEncoder(obs_shape, list(self.config.channels), self.config.hidden_size)
