"""`duo-ai eval`: load a checkpoint, rebuild its policy and environment, evaluate N episodes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from duo_ai.build import build_policy, compute_from, config_from_checkpoint, env_maker
from duo_ai.config import MAX_EPISODES, Config
from duo_ai.coordination.baselines import reselect
from duo_ai.coordination.config import AGENT_KEYS, is_coordination_run
from duo_ai.coordination.sweep import cost_sweep
from duo_ai.core.checkpoint import load_checkpoint, resolve_checkpoint_path
from duo_ai.core.checks import INT32_MAX, Rule, check_options
from duo_ai.core.errors import ConfigError
from duo_ai.core.rng import seed_everything
from duo_ai.envs import split_config
from duo_ai.evaluation import EVAL_SEED_OFFSET, evaluate

__all__ = ["config_from_checkpoint", "evaluate_checkpoint"]


# The command-line options of `duo-ai eval`, by the rules of the config fields they stand for.
EVAL_OPTIONS = {
    "--episodes": Rule(ge=1, le=MAX_EPISODES),
    "--temperature": Rule(ge=0),
    "--seed": Rule(ge=0, le=INT32_MAX),
    "--split": Rule(test=lambda s: bool(s.strip()), allowed="a split name (train, test, or one from env.splits)"),
}


def embedded_agents(payload: dict[str, Any], overrides: list[str]) -> dict | None:
    """The novice and expert a coordinator's checkpoint carries, unless an override names an agent file
    (`train_expert=...`): then every agent comes from the files the config names, as given (the
    run's log says which files were read)."""
    named = [key for key in (o.split("=", 1)[0].strip() for o in overrides) if key in AGENT_KEYS]
    return None if named and payload.get("agents") else payload.get("agents")


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
    config: Config, payload: dict[str, Any], env: Any, compute: Any, log: Callable[[str], None]
) -> tuple[Any, dict[str, Any]]:
    """The checkpoint's policy on `env`. A calibrated baseline evaluated at another cost weight
    than it was calibrated at is calibrated again for that weight, from its stored validation
    episodes (the benchmark's one-coordinator-per-weight protocol, at no extra cost)."""
    config.policy.load_path = None
    policy = build_policy(config, env, compute)
    policy.set_params(payload["model_state_dict"])
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


def evaluate_checkpoint(
    checkpoint: str,
    split: str | None = None,
    num_episodes: int | None = None,
    temperature: float | None = None,
    config_paths: Any = None,
    overrides: list[str] = (),
    seed: int | None = None,
    cost_weights: list[float] | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """Load a checkpoint (or a run folder's last.ckpt) and evaluate it; unset arguments come from its config.

    With `cost_weights` (a coordinator only) the metrics add `cost_sweep`, the reward at each
    expert-query cost weight on the same episodes, and `auc`, the area under that curve.
    """
    check_options(EVAL_OPTIONS, num_episodes, temperature, seed, split)
    checkpoint = str(resolve_checkpoint_path(checkpoint))
    payload = load_checkpoint(checkpoint)
    config = config_from_checkpoint(payload, config_paths, list(overrides))
    check_coordination_overrides(checkpoint, config, list(overrides))
    ev = config.evaluation
    split = split if split is not None else ev.splits[0] if ev.splits else "test"
    split_config(config.env, split)  # an unknown split fails here, before any agent or env is built
    num_episodes = num_episodes if num_episodes is not None else ev.num_episodes
    temperature = temperature if temperature is not None else ev.temperature
    if num_episodes < 1:
        raise ConfigError(f"evaluation.num_episodes of {checkpoint} is {num_episodes}; pass --episodes N (N >= 1)")
    if cost_weights and not is_coordination_run(config):
        raise ConfigError(f"--cost-sweep evaluates coordinators; {checkpoint} is a base agent (no train_novice/expert)")
    seed = config.seed if seed is None else seed
    seed_everything(seed)
    compute = compute_from(config)
    make = env_maker(config, compute, log, split=split, agents=embedded_agents(payload, list(overrides)))
    env = make(split, min(ev.num_envs, num_episodes))
    try:
        policy, notes = load_policy(config, payload, env, compute, log)
        result = evaluate(policy, env, num_episodes, temperature, seed=seed + EVAL_SEED_OFFSET, split=split)
    finally:
        env.close()
    metrics = {**result.metrics(), **notes}
    if is_coordination_run(config):
        c = config.coordination
        metrics.update(
            cost_weight=c.expert_query_cost_weight,
            base_penalty=c.base_penalty,
            switch_agent_cost_weight=c.switch_agent_cost_weight,
        )
        if cost_weights:
            metrics.update(cost_sweep(result, c.base_penalty, c.switch_agent_cost_weight, cost_weights))
    metrics.update(
        {
            "checkpoint": str(checkpoint),
            "global_step": int(payload.get("global_step", 0)),
            "env": split_config(config.env, split).task,  # the task the episodes played (a split may set its own)
            "seed": seed,
        }
    )
    return metrics
