"""A checkpoint loaded for playing: the one way `duo-ai eval`, `video` and `ask-map` rebuild a
checkpoint's config, environment and policy, so that one `--seed` plays the same episodes in each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import torch

from duo_ai.build import build_policy, compute_from, config_from_checkpoint, env_maker
from duo_ai.config import Config
from duo_ai.coordination.baselines import reselect
from duo_ai.coordination.config import AGENT_KEYS, is_coordination_run
from duo_ai.core.checkpoint import load_checkpoint, resolve_checkpoint_path
from duo_ai.core.errors import CheckpointError, ConfigError
from duo_ai.core.policy import Policy
from duo_ai.core.rng import seed_everything
from duo_ai.envs import split_config
from duo_ai.evaluation import level_sampling_seed

Log = Callable[[str], None]


def check_coordination_overrides(checkpoint: str, config: Config, overrides: list[str]) -> None:
    """Refuse coordination settings (`--cost-weight`, `coordination.*`, agent files) for a base agent:
    they would be silently ignored."""
    if is_coordination_run(config):
        return
    keys = [o.split("=", 1)[0].strip() for o in overrides]
    given = [key for key in keys if key.startswith("coordination.") or key in AGENT_KEYS]
    if given:
        raise ConfigError(
            f"{checkpoint} is a base agent (no train_novice/expert), so {given[0]} (or --cost-weight) would be "
            "ignored; coordination settings apply to coordinators only: drop it"
        )


def load_policy(
    config: Config, payload: dict[str, Any], env: Any, compute: Any, log: Log
) -> tuple[Policy, dict[str, Any]]:
    """The checkpoint's policy on `env`. A calibrated baseline played at another cost weight
    than it was calibrated at is calibrated again for that weight, from its stored validation
    episodes (the benchmark's one-coordinator-per-weight protocol, at no extra cost)."""
    config.policy.load_path = None
    policy = build_policy(config, env, compute)
    trained = ((payload.get("config") or {}).get("env") or {}).get("task")
    try:
        policy.set_params(payload["model_state_dict"])
    except CheckpointError as e:
        if trained is None or trained == config.env.task:
            raise
        raise CheckpointError(  # the override of env.task is the cause, not the model
            f"the checkpoint was trained on {trained} and its network does not fit {config.env.task} "
            f"({getattr(e, 'mismatch', e)}); "
            f"play it on {trained}, or train an agent on {config.env.task}"
        ) from None
    calibration = payload.get("calibration") or {}
    if not calibration.get("episodes") or "chosen" not in calibration:
        return policy, {}
    c = config.coordination
    value = reselect(calibration, c.expert_query_cost_weight, c.base_penalty, c.switch_agent_cost_weight)
    param = calibration["param"]
    policy.set_params({param: torch.tensor(value, dtype=torch.float64)})
    if value != calibration["chosen"]:
        weight, chosen = c.expert_query_cost_weight, calibration["chosen"]
        log(f"calibration re-priced at cost weight {weight:g}: {param} {chosen:.4g} -> {value:.4g}")
    return policy, {"calibrated": {"param": param, "value": value, "cost_weight": c.expert_query_cost_weight}}


@dataclass
class Playing:
    """A checkpoint ready to play `episodes` episodes of `split`; `close()` (or `with`) closes its env.

    `seed` is the user's `--seed` (it seeds the actions); the levels come from `level_seed`."""

    checkpoint: str
    payload: dict[str, Any]
    config: Config
    split: str
    seed: int
    episodes: int
    temperature: float
    env: gym.vector.VectorEnv
    policy: Policy
    notes: dict[str, Any]  # a calibrated baseline's choice at the config's cost weight

    @property
    def level_seed(self) -> int:
        return level_sampling_seed(self.seed)

    @property
    def task(self) -> str:
        """The task the episodes play (a split may set its own)."""
        return split_config(self.config.env, self.split).task

    def close(self) -> None:
        self.env.close()

    def __enter__(self) -> Playing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_for_playing(
    checkpoint: str,
    split: str | None = None,
    seed: int | None = None,
    episodes: int | None = None,
    temperature: float | None = None,
    num_envs: int | None = None,
    config_paths: Any = None,
    overrides: list[str] = (),
    check: Callable[[str, Config], None] = lambda checkpoint, config: None,
    log: Log = lambda message: None,
) -> Playing:
    """Load `checkpoint` (or a run folder's last.ckpt) with its config under `config_paths` and
    `overrides`, and build the env of `split` on `num_envs` envs and the policy on it.

    Unset arguments come from the config: `split` its first evaluation split, `seed` its seed,
    `episodes` and `temperature` its evaluation settings, `num_envs` as many as evaluation plays
    `episodes` on. `check(path, config)` refuses what a command cannot play, before anything is built.
    """
    path = str(resolve_checkpoint_path(checkpoint))
    payload = load_checkpoint(path)
    config = config_from_checkpoint(payload, config_paths, list(overrides))
    check_coordination_overrides(path, config, list(overrides))
    check(path, config)
    ev = config.evaluation
    split = split if split is not None else ev.splits[0] if ev.splits else "test"
    split_config(config.env, split)  # an unknown split fails here, before any agent or env is built
    episodes = episodes if episodes is not None else ev.num_episodes
    if episodes < 1:
        raise ConfigError(f"evaluation.num_episodes of {path} is {episodes}; pass --episodes N (N >= 1)")
    temperature = temperature if temperature is not None else ev.temperature
    seed = config.seed if seed is None else seed
    seed_everything(seed)
    compute = compute_from(config)
    make = env_maker(config, compute, log, split=split, agents=payload.get("agents"))
    env = make(split, num_envs or min(ev.num_envs, episodes))
    try:
        policy, notes = load_policy(config, payload, env, compute, log)
    except BaseException:
        env.close()
        raise
    return Playing(path, payload, config, split, seed, episodes, temperature, env, policy, notes)
