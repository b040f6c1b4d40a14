"""A coordination run's one set-up step: its agents and its cost unit, resolved once at the start.

`setup_coordination` reads and checks every agent checkpoint, builds the agents, settles
`base_penalty` (given, cached or measured) and records the resolved values in the run's config,
so `config.yaml` and every checkpoint say what was used. Every environment of the run (training
and each evaluation split) is then wrapped with `Coordination.wrap`, which reuses those agents;
building an environment never changes the config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from duo_ai.coordination.agents import (
    AgentCheckpoint,
    build_agent,
    check_trained_with,
    game_of,
    read_agents,
    resolve_agent_paths,
)
from duo_ai.coordination.config import AGENT_KEYS, CoordinationConfig, is_coordination_run
from duo_ai.coordination.env import CoordinationEnv
from duo_ai.coordination.penalty import resolve_base_penalty
from duo_ai.core.compute import Compute
from duo_ai.policies.ppo import PPOPolicy


@dataclass
class Coordination:
    """The loaded agents (by config key), the costs, and which agents act in which split.

    `agent_envs`: each agent's training `env` section, as its checkpoint stores it.
    """

    config: CoordinationConfig
    agents: dict[str, PPOPolicy]
    base_penalty: float
    agent_envs: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def agents_for_split(self, split: str) -> tuple[str, str]:
        """The config keys of the novice and expert acting in `split` (test ones fall back to train ones)."""
        if split in self.config.train_agent_splits:
            return "train_novice", "train_expert"
        novice = "test_novice" if "test_novice" in self.agents else "train_novice"
        expert = "test_expert" if "test_expert" in self.agents else "train_expert"
        return novice, expert

    def wrap(self, base_env: gym.vector.VectorEnv, split: str) -> CoordinationEnv:
        """The coordinator's env over `base_env` (of `split`); closes `base_env` if that fails."""
        novice, expert = self.agents_for_split(split)
        try:
            return CoordinationEnv(
                base_env,
                self.agents[novice],
                self.agents[expert],
                self.config,
                self.base_penalty,
                novice_env=self.agent_envs.get(novice),
                fit_novice=self.agents["train_novice"],
                test_novice=self.agents[self.agents_for_split("test")[0]],
            )
        except BaseException:
            base_env.close()
            raise


def setup_coordination(
    config: Any,
    compute: Compute,
    spaces_env: gym.vector.VectorEnv,
    log: Callable[[str], None],
    embedded: dict[str, dict[str, Any]] | None = None,
) -> Coordination | None:
    """Resolve a coordination run's agents and base penalty into `config`; None for other runs.

    `spaces_env` is any base env of the run's game (the agents read their spaces from it).
    `embedded`: the agents stored in a coordinator's checkpoint (`embed_agents`), used instead of
    the checkpoint files the config names, so a coordinator works after those are moved or deleted;
    unless the config names other agent files (an override of `test_novice`, say): then those files,
    where train_novice/train_expert must hold the agents it was trained with.
    """
    if not is_coordination_run(config):
        return None
    if embedded and all(getattr(config, key) == embedded.get(key, {}).get("path") for key in AGENT_KEYS):
        checkpoints = {
            key: AgentCheckpoint(key, agent["path"], agent, agent["game"], embedded=True)
            for key, agent in embedded.items()
        }
    else:
        resolve_agent_paths(config)
        checkpoints = read_agents(config)
        if embedded:
            check_trained_with(embedded, checkpoints)
    agents = {key: build_agent(checkpoints[key], spaces_env, compute) for key in AGENT_KEYS if key in checkpoints}
    agent_envs = {key: (c.payload.get("config") or {}).get("env") for key, c in checkpoints.items()}
    coordination = Coordination(config.coordination, agents, base_penalty=0.0, agent_envs=agent_envs)
    expert_key = coordination.agents_for_split(config.coordination.base_penalty_split)[1]
    coordination.base_penalty = config.coordination.base_penalty = resolve_base_penalty(
        config, checkpoints[expert_key], agents[expert_key], log
    )
    return coordination


def embed_agents(config: Any, coordination: Coordination) -> dict[str, dict[str, Any]]:
    """The agents' weights and configs, to store in every coordinator checkpoint (a few MB each)."""
    game = game_of(config.env)
    return {
        key: {
            "path": str(getattr(config, key)),
            "game": game,
            "policy_config": dataclasses.asdict(agent.config),
            "model_state_dict": {k: v.cpu() for k, v in agent.get_params().items()},
            "config": {"env": coordination.agent_envs.get(key)},
        }
        for key, agent in coordination.agents.items()
    }
