"""PPO policy: wraps an actor-critic model, chooses actions, and manages its parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch.nn import functional as F

import duo_ai.models  # noqa: F401  (registers the models)
from duo_ai.core.checkpoint import load_checkpoint
from duo_ai.core.compute import Compute
from duo_ai.core.errors import CheckpointError
from duo_ai.core.policy import Policy
from duo_ai.core.registry import POLICIES
from duo_ai.models.base import ModelOutput, build_model, model_config_from


@dataclass
class PPOPolicyConfig:
    """Configuration dataclass for PPOPolicy.

    name: the policy class ("ppo"). model: a model name or a dict with `name` and the model's
    settings. load_path: a checkpoint to load the weights from.
    """

    name: str = "ppo"
    model: Any = "impala_coord_ppo"
    load_path: str | None = None

    def __post_init__(self) -> None:
        """Turn a model name or dict into the model's config object.

        Raises IndexError for a dict without `name` and ValueError for anything that is not a
        string, a dict or a model config.
        """
        if not isinstance(self.model, (str, dict)) and hasattr(self.model, "items"):
            self.model = dict(self.model.items())  # an OmegaConf DictConfig
        self.model = model_config_from(self.model)


def spaces_of(env: gym.Env | gym.vector.VectorEnv) -> tuple[gym.Space, gym.Space]:
    """Per-environment observation and action spaces of a single env or a vector env."""
    obs_space = getattr(env, "single_observation_space", None) or env.observation_space
    action_space = getattr(env, "single_action_space", None) or env.action_space
    return obs_space, action_space


def to_tensor(obs: Any, device: torch.device) -> Any:
    """numpy arrays (or dicts of them) -> tensors on `device`; dtypes and strides are kept."""
    if isinstance(obs, dict):
        return {k: to_tensor(v, device) for k, v in obs.items()}
    if isinstance(obs, torch.Tensor):
        return obs.to(device, non_blocking=True)
    tensor = torch.from_numpy(np.asarray(obs))
    if device.type == "cuda":
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


def log_prob_and_entropy(logits: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log pi(action) and the entropy of the categorical distribution given by `logits` [B, A]."""
    log_probs = F.log_softmax(logits, dim=-1)
    chosen = log_probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    return chosen, entropy


def sample_actions(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Argmax at temperature 0, else a draw from softmax(logits / temperature)."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return logits.argmax(dim=-1)
    # Gumbel-max: one fused kernel, same distribution as torch.distributions.Categorical.
    uniform = torch.rand_like(logits, dtype=torch.float32).clamp_(min=1e-20)
    return (logits.float() / temperature - torch.log(-torch.log(uniform))).argmax(dim=-1)


def params_mismatch(own: dict[str, Any], params: dict[str, Any]) -> str | None:
    """How `params` fail to fit a model whose state dict is `own`, in a few words; None if they fit."""
    missing = [k for k in own if k not in params]
    if missing:
        return f"{len(missing)} missing, e.g. {missing[0]}"
    extra = [k for k in params if k not in own]
    if extra:
        return f"{len(extra)} unexpected, e.g. {extra[0]}"
    for key, value in own.items():
        got = getattr(params[key], "shape", None)
        if got is None or tuple(got) != tuple(value.shape):
            shown = "no tensor" if got is None else f"shape {list(got)}"
            return f"{key} has {shown} in the checkpoint, shape {list(value.shape)} here"
    return None


@POLICIES.register("ppo")
class PPOPolicy(Policy):
    """Policy class for PPO, wrapping a model and providing action selection and parameter management.

    >>> policy = PPOPolicy(PPOPolicyConfig(model="impala_ppo"), env)
    >>> action = policy.act(obs)
    """

    config_cls = PPOPolicyConfig

    def __init__(self, config: PPOPolicyConfig, env: gym.Env | gym.vector.VectorEnv) -> None:
        self.config = config
        self.observation_space, self.action_space = spaces_of(env)
        self.model = build_model(config.model, self.observation_space, self.action_space)
        self.compute = Compute(device=torch.device("cpu"))
        self._forward = self.model
        if config.load_path:
            self.load(config.load_path)

    # -- compute placement --------------------------------------------------------------------
    def setup(self, compute: Compute) -> PPOPolicy:
        """Move the model to `compute.device`, in channels-last layout and compiled if asked."""
        self.compute = compute
        self.model.to(compute.device)
        if compute.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self._forward = torch.compile(self.model) if compute.compile else self.model
        return self

    @property
    def device(self) -> torch.device:
        return self.compute.device

    def forward(self, obs: Any) -> ModelOutput:
        """Model forward on tensors already on the device, under the configured precision.

        Logits and values come back in fp32 so loss arithmetic stays in full precision.
        """
        with self.compute.autocast():
            out = self._forward(obs)
        return ModelOutput(out.logits.float(), out.value.float(), out.hidden)

    # -- what PPO needs beyond the Policy API ----------------------------------------------------
    def value(self, obs: Any) -> torch.Tensor:
        """V(obs) [B] for a batch of observations, without gradients."""
        with torch.inference_mode():
            return self.forward(to_tensor(obs, self.device)).value

    def evaluate_actions(self, obs: Any, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """log pi(actions | obs), the policy's entropy and V(obs), each [B], with gradients."""
        out = self.forward(obs)
        log_prob, entropy = log_prob_and_entropy(out.logits, actions)
        return log_prob, entropy, out.value

    # -- the Policy API -------------------------------------------------------------------------
    def reset(self, done: np.ndarray) -> None:
        """Reset the policy state at episode boundaries (the PPO models are stateless)."""

    def act(self, obs: Any, temperature: float = 1.0, return_model_output: bool = False) -> Any:
        """Select actions for a batch of observations; temperature 0 selects the argmax."""
        with torch.inference_mode():
            out = self.forward(to_tensor(obs, self.device))
            action = sample_actions(out.logits, temperature)
        return (action, out) if return_model_output else action

    def get_params(self) -> dict[str, Any]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def set_params(self, params: dict[str, Any]) -> None:
        mismatch = params_mismatch(self.model.state_dict(), params)
        if mismatch is not None:
            error = CheckpointError(
                f"parameters do not fit model {self.config.model.name!r} ({mismatch}); "
                "was the checkpoint saved from a different model or feature_type?"
            )
            error.mismatch = mismatch  # what differs, for a caller that knows the cause
            raise error
        self.model.load_state_dict(params)

    def train(self) -> None:
        self.model.train()

    def eval(self) -> None:
        self.model.eval()

    def load(self, path: str) -> None:
        """Load weights from a duo-ai checkpoint, refusing one saved for another model."""
        payload = load_checkpoint(path)
        saved = (payload.get("policy_config") or {}).get("model") or {}
        saved_name = saved.get("name") if isinstance(saved, dict) else saved
        if saved_name and saved_name != self.config.model.name:
            raise CheckpointError(
                f"checkpoint {path} holds a {saved_name!r} model but this policy uses "
                f"{self.config.model.name!r}; set policy.model to match the checkpoint"
            )
        self.set_params(payload["model_state_dict"])
