"""`base_penalty`: the expert's reward per step, the unit in which expert calls are charged.

Measured by running the expert that acts in `coordination.base_penalty_split` (the test expert on
the test split by default) alone there: mean episode reward / mean episode length. The measurement
is cached in `base_penalty.json` next to the expert checkpoint, keyed by the checkpoint's path,
modification time and size and by the measurement settings, so every coordinator trained over the
same expert (PPO and each baseline) shares one measurement.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from duo_ai.coordination.agents import AgentCheckpoint
from duo_ai.core.errors import ConfigError, OutputError
from duo_ai.core.files import atomic_write_text
from duo_ai.envs import make_env, split_config
from duo_ai.evaluation import evaluate
from duo_ai.policies.ppo import PPOPolicy

CACHE_FILE = "base_penalty.json"
# Level-sampling seed offset of the measurement, apart from training and evaluation seeds.
MEASURE_SEED_OFFSET = 20_000


def cache_key(config: Any, expert: AgentCheckpoint) -> dict[str, Any]:
    """What the measurement depends on: the expert file's identity and the measurement settings."""
    stat = Path(expert.path).stat()
    env = split_config(config.env, config.coordination.base_penalty_split)
    return {
        "expert": str(Path(expert.path).resolve()),
        "mtime_ns": stat.st_mtime_ns,
        "size": stat.st_size,
        "env": [env.name, env.task, env.distribution_mode, env.start_level, env.num_levels],
        "episodes": config.coordination.base_penalty_episodes,
        "temperature": config.coordination.agent_temperature,
        "seed": config.seed,
    }


def _read_cache(path: Path) -> list[dict[str, Any]]:
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return entries if isinstance(entries, list) else []


def _write_cache(path: Path, entries: list[dict[str, Any]]) -> bool:
    """Atomically replace the cache; False if the expert's folder is not writable."""
    try:
        atomic_write_text(path, json.dumps(entries, indent=2))
        return True
    except (OSError, OutputError):
        return False


def measure_base_penalty(config: Any, expert: PPOPolicy) -> dict[str, float]:
    """Run the expert on `base_penalty_split`; returns its reward per step, mean reward and length."""
    episodes, split = config.coordination.base_penalty_episodes, config.coordination.base_penalty_split
    env = make_env(config.env, split, num_envs=min(config.evaluation.num_envs, episodes))
    try:
        result = evaluate(
            expert,
            env,
            episodes,
            config.coordination.agent_temperature,
            seed=config.seed + MEASURE_SEED_OFFSET,
            split=split,
        )
    finally:
        env.close()
    reward, length = float(np.mean(result.returns)), float(np.mean(result.lengths))
    return {"base_penalty": reward / length, "reward_mean": reward, "length_mean": length}


def resolve_base_penalty(
    config: Any, checkpoint: AgentCheckpoint, expert: PPOPolicy, log: Callable[[str], None]
) -> float:
    """`coordination.base_penalty` if set; else the cached or freshly measured value of `expert`."""
    if config.coordination.base_penalty is not None:
        return config.coordination.base_penalty
    cache = Path(checkpoint.path).parent / CACHE_FILE
    key = cache_key(config, checkpoint)
    entries = _read_cache(cache)
    hit = next((e for e in entries if e.get("key") == key), None)
    if hit is not None:
        where = f"cached in {cache}"
    else:
        hit = {"key": key, **measure_base_penalty(config, expert)}
        entries.append(hit)
        where = f"measured, cached in {cache}" if _write_cache(cache, entries) else "measured, not cached"
    log(
        f"coordination: base_penalty = {hit['base_penalty']:.5g} (expert reward {hit['reward_mean']:.3g} / "
        f"length {hit['length_mean']:.4g} over {key['episodes']} episodes on "
        f"{config.coordination.base_penalty_split}; {where})"
    )
    if hit["base_penalty"] <= 0:
        raise ConfigError(
            f"the expert earns {hit['reward_mean']:.3g} per episode on {config.coordination.base_penalty_split}, so "
            "its reward per step cannot be the unit of the query cost; train the expert longer or set "
            "coordination.base_penalty"
        )
    return float(hit["base_penalty"])
