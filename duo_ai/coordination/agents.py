"""The novice and the expert: base PPO agents loaded from checkpoints written by `duo-ai train`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch

from duo_ai.coordination.config import AGENT_KEYS, is_coordination_run
from duo_ai.core.checkpoint import load_checkpoint, resolve_checkpoint_path
from duo_ai.core.compute import Compute
from duo_ai.core.errors import CheckpointError, ConfigError
from duo_ai.envs import EnvConfig, env_family
from duo_ai.models.coordinator import is_coordinator_model
from duo_ai.policies.ppo import PPOPolicy, PPOPolicyConfig


@dataclass
class AgentCheckpoint:
    """A checked agent checkpoint: which config key named it, and the game it was trained on."""

    key: str
    path: str
    payload: dict[str, Any]
    game: str
    # Read from the copy a coordinator's checkpoint carries, not from the file at `path`.
    embedded: bool = False

    def describe(self) -> str:
        """How an error names this agent: the file, or the copy in the coordinator checkpoint."""
        if self.embedded:
            return f"the {self.key} that the coordinator's checkpoint carries (a copy of {self.path})"
        return f"{self.key} {self.path}"


def read_agent_checkpoint(key: str, path: str) -> AgentCheckpoint:
    """Load the checkpoint named by config key `key`, refusing anything but a base PPO agent."""
    try:
        payload = load_checkpoint(path)
    except CheckpointError as e:
        raise CheckpointError(f"{key}: {e}") from None
    policy_config = payload.get("policy_config") or {}
    stored = payload.get("config") or {}
    model = policy_config.get("model")
    model_name = model.get("name") if isinstance(model, dict) else model
    # A coordinator (learned or baseline) cannot act in the game: it picks agents, not game actions.
    if (
        policy_config.get("name") != "ppo"
        or is_coordinator_model(model_name)
        or any(stored.get(k) is not None for k in AGENT_KEYS)
    ):
        kind = policy_config.get("name") if policy_config.get("name") != "ppo" else f"ppo/{model_name}"
        raise CheckpointError(
            f"{key} {path} is a coordinator checkpoint ({kind}), not a novice/expert agent; "
            "pass a base agent trained with -c procgen_agent or -c minigrid_agent"
        )
    return AgentCheckpoint(key, path, payload, game_of(stored.get("env") or {}))


def game_of(env: dict[str, Any] | EnvConfig) -> str:
    """The game an env config plays, as its family defines it (agents of one game share spaces)."""
    cfg = env if isinstance(env, EnvConfig) else EnvConfig(**{k: v for k, v in env.items() if k != "splits"})
    try:
        return env_family(cfg).game(cfg)
    except ConfigError:  # an env family this version does not know
        return f"{cfg.name}/{cfg.task}"


def same_weights(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two agents' `model_state_dict`s hold the same tensors (the same agent, wherever stored)."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def check_trained_with(embedded: dict[str, dict[str, Any]], agents: dict[str, AgentCheckpoint]) -> None:
    """A coordinator learned around its training pair: other train_novice/train_expert weights than
    the ones it carries are refused (other test_novice/test_expert are how it is evaluated elsewhere)."""
    for key in ("train_novice", "train_expert"):
        carried, given = embedded.get(key), agents.get(key)
        if carried is None or given is None:
            continue
        if not same_weights(carried["model_state_dict"], given.payload.get("model_state_dict") or {}):
            raise ConfigError(
                f"{key}={given.path} is not the {key} this coordinator was trained with ({carried['path']}); "
                "evaluate it with its own, or set test_novice/test_expert to play the test splits with other agents"
            )


def read_agents(config: Any) -> dict[str, AgentCheckpoint]:
    """Every configured agent checkpoint, checked to be base agents of the coordination env's game.

    All four are checked up front, so a bad test-time agent fails before training, not after it.
    """
    if not is_coordination_run(config):
        raise ConfigError("no novice/expert configured; set train_novice and train_expert to agent checkpoints")
    for key in ("train_novice", "train_expert"):
        if getattr(config, key) is None:
            raise ConfigError(
                f"{key} is not set; a coordination run needs train_novice and train_expert "
                "(checkpoints written by duo-ai train)"
            )
    agents = {key: read_agent_checkpoint(key, getattr(config, key)) for key in AGENT_KEYS if getattr(config, key)}
    env_game = game_of(config.env)
    novice = agents["train_novice"]
    for agent in agents.values():
        if agent.game != novice.game:
            raise CheckpointError(
                f"{novice.key} was trained on {novice.game} but {agent.key} on {agent.game}; "
                "the novice and the expert must be trained on the same game (on MiniGrid: the same suite)"
            )
    if novice.game != env_game:
        raise CheckpointError(
            f"the agents were trained on {novice.game} but the coordination env is {env_game}; "
            f"set env.name/env.task to {novice.game} or pass agents trained on {env_game}"
        )
    return agents


def resolve_agent_paths(config: Any) -> None:
    """Make the agent paths absolute, so the run's config works from any working directory."""
    for key in AGENT_KEYS:
        path = getattr(config, key)
        if path is not None:
            try:
                path = resolve_checkpoint_path(Path(path).expanduser())  # a run folder means its last.ckpt
            except CheckpointError as e:
                raise CheckpointError(f"{key}: {e}") from None
            setattr(config, key, str(path.resolve()))


def build_agent(agent: AgentCheckpoint, env: gym.vector.VectorEnv, compute: Compute) -> PPOPolicy:
    """The agent's `PPOPolicy` with its trained weights, on `compute`, in eval mode."""
    config = PPOPolicyConfig(**{**agent.payload["policy_config"], "load_path": None})
    try:
        policy = PPOPolicy(config, env).setup(compute)
    except ConfigError as e:
        raise CheckpointError(f"{agent.describe()} cannot act in this env ({e})") from None
    try:
        policy.set_params(agent.payload["model_state_dict"])
    except CheckpointError as e:
        raise CheckpointError(f"{agent.describe()}: {e}") from None
    policy.eval()
    return policy
