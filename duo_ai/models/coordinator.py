"""Coordinator models: PPO heads that pick who acts (0 the novice, 1 the expert) from chosen features.

A coordinator sees the base observation and the novice's hidden features and logits (the
coordination env's dict observation). `CoordinatorModel` does everything but encode the base
observation, which each suite's model provides with `make_encoder` (an IMPALA CNN for Procgen's
frames, a small grid CNN for MiniGrid's view).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import gymnasium as gym
import torch
from torch import nn

from duo_ai.core.checks import checked
from duo_ai.core.errors import ConfigError
from duo_ai.core.registry import MODELS
from duo_ai.models.base import ActorCriticHeads, ModelOutput, num_actions_of

FEATURE_TYPES = ("obs", "hidden", "dist", "hidden_obs", "hidden_dist", "obs_dist", "obs_hidden_dist")


@dataclass
class CoordinatorConfig:
    """What every coordinator model is configured with: PPO heads over the features of `feature_type`.

    `obs` = the model's own encoding of the base observation, `hidden` = the novice's hidden
    features, `dist` = softmax of the novice's logits; `_`-joined names concatenate them.
    `expert_prob_init` is the probability of asking the expert (action 1) before any training;
    None starts at 1/2 as any PPO head. Starting at a calibrated rate (random's best p on the
    selection split) starts PPO where asking that often already pays, rather than at 1/2.
    `normalize_features` standardises the novice's features (`hidden`, `dist`) per dimension with
    the mean and std of the first minibatch the coordinator trains on (then fixed, and saved with
    the weights). A briefly trained novice's features barely change between states (per dimension
    a std near 0.02 around a mean near 0.06), so heads on the raw features see mostly a constant.
    """

    name: str = ""
    feature_type: str = checked("obs_hidden_dist", choices=FEATURE_TYPES)
    expert_prob_init: float | None = checked(
        None, test=lambda p: isinstance(p, (int, float)) and 0 < p < 1, allowed="a probability in (0, 1), or null"
    )
    normalize_features: bool = checked(False, test=lambda v: isinstance(v, bool), allowed="true or false")

    def __post_init__(self) -> None:
        if self.normalize_features and self.feature_type == "obs":
            raise ConfigError(
                "policy.model.normalize_features=true standardises the novice's features, and "
                "feature_type=obs has none; use a feature_type with hidden or dist, or normalize_features=false"
            )


class FeatureStandardizer(nn.Module):
    """(x - mean) / std per dimension, with mean and std taken from the first batch seen in training.

    Until then it passes features through unchanged. The statistics are buffers, so they travel in
    `state_dict()` (checkpoints, resume, data-parallel broadcasts) and stay fixed afterwards: the
    coordinator's inputs mean the same thing for the whole run and at evaluation.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("std", torch.ones(width))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.uint8))  # uint8: gloo broadcasts it
        self._fitted: bool | None = None  # `fitted` as a Python bool; None = not read yet

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._fitted = None  # loaded statistics: read the flag again

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._fitted is None:
            self._fitted = bool(self.fitted)  # read once (a host sync on CUDA), not at every forward
        if self.training and not self._fitted:
            with torch.no_grad():
                flat = x.detach().float().reshape(-1, x.shape[-1])
                self.mean.copy_(flat.mean(0))
                # The floor keeps a dimension that never changed (a dead ReLU) at 0, not at 0 / 0.
                self.std.copy_(flat.var(0, unbiased=False).add(1e-8).sqrt())
                self.fitted.fill_(1)
            self._fitted = True
        if not self._fitted:
            return x
        return (x - self.mean) / self.std


class CoordinatorModel(nn.Module):
    """Observations are dicts with `base_obs`, `novice_hidden` [B, H] and `novice_logits` [B, A].

    Subclasses set `config_cls` and build the base observation's encoder in `make_encoder`
    (an `nn.Module` with an `output_size`), used only when `feature_type` includes `obs`.
    """

    config_cls: type

    def make_encoder(self, obs_shape: tuple[int, ...]) -> nn.Module:
        raise NotImplementedError

    def __init__(self, config: CoordinatorConfig, observation_space: gym.Space, action_space: gym.Space):
        super().__init__()
        if not isinstance(observation_space, gym.spaces.Dict) or "base_obs" not in observation_space.spaces:
            raise ConfigError(
                f"model {config.name} needs a coordination environment (dict observations with "
                "base_obs, novice_hidden, novice_logits); for a base agent use a model without 'coord'"
            )
        self.config = config
        self.parts = config.feature_type.split("_")
        spaces = observation_space.spaces
        width = 0
        if "obs" in self.parts:
            self.encoder = self.make_encoder(spaces["base_obs"].shape)
            width += self.encoder.output_size
        novice_widths = {"hidden": spaces["novice_hidden"].shape[-1], "dist": spaces["novice_logits"].shape[-1]}
        novice_parts = [part for part in self.parts if part in novice_widths]
        width += sum(novice_widths[part] for part in novice_parts)
        standardized = novice_parts if config.normalize_features else []
        self.standardizers = nn.ModuleDict({part: FeatureStandardizer(novice_widths[part]) for part in standardized})
        self.heads = ActorCriticHeads(width, num_actions_of(action_space))
        if config.expert_prob_init is not None:
            # The policy weights start near 0 (gain 0.01), so the bias sets the first policy:
            # softmax([0, log(p / (1 - p))]) = [1 - p, p].
            p = config.expert_prob_init
            with torch.no_grad():
                self.heads.policy.bias.copy_(torch.tensor([0.0, math.log(p / (1 - p))]))

    def forward(self, obs: dict[str, torch.Tensor]) -> ModelOutput:
        features = []
        for part in self.parts:
            if part == "obs":
                features.append(self.encoder(obs["base_obs"]))
                continue
            if part == "hidden":
                x = obs["novice_hidden"].float()
            else:
                x = torch.softmax(obs["novice_logits"].float(), dim=-1)
            features.append(self.standardizers[part](x) if part in self.standardizers else x)
        hidden = torch.cat(features, dim=-1) if len(features) > 1 else features[0]
        return self.heads(hidden)


def is_coordinator_model(name: object) -> bool:
    """Whether the model registered as `name` picks agents (a coordinator) rather than game actions."""
    try:
        return isinstance(name, str) and issubclass(MODELS.get(name), CoordinatorModel)
    except ConfigError:
        return False
