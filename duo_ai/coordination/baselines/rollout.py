"""The novice's own states: what `logit` and `ood` set their candidate thresholds from.

The novice plays alone (the `always` novice coordinator) through the shared episode player,
`duo_ai.evaluation.play_episodes`: only whole episodes count, with a fixed quota per env as in
evaluation, so the states are not biased towards the starts of episodes or towards short episodes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from duo_ai.coordination.baselines.blind import AlwaysPolicy, AlwaysPolicyConfig
from duo_ai.evaluation import play_episodes


def novice_rollout(
    env: gym.vector.VectorEnv, num_episodes: int, seed: int, per_state: Callable[[Any], np.ndarray]
) -> tuple[np.ndarray, int]:
    """`per_state(obs)` (one row per env) over every state of `num_episodes` complete episodes of
    the novice acting alone in coordination env `env`, stacked; and the env steps spent."""
    novice = AlwaysPolicy(AlwaysPolicyConfig(agent="novice"), env)
    current: list[list[np.ndarray]] = [[] for _ in range(env.num_envs)]  # each env's episode so far
    pooled, steps = [], 0
    for step in play_episodes(novice, env, num_episodes, temperature=1.0, seed=seed, watch=per_state):
        for i, row in enumerate(np.asarray(step.seen)):
            current[i].append(row)
        steps += env.num_envs
        for i in step.ended:
            pooled.extend(current[i])
        for i in np.flatnonzero(step.terminated | step.truncated):
            current[i] = []
    return np.stack(pooled), steps


def percentile_candidates(
    env: gym.vector.VectorEnv,
    rollout_episodes: int,
    seed: int,
    scores: Callable[[Any], np.ndarray],
    percentiles: list[float],
) -> tuple[list[float], int]:
    """`percentiles` of the `scores` of the novice's own states over `rollout_episodes` complete episodes."""
    values, steps = novice_rollout(env, rollout_episodes, seed, scores)
    return [float(v) for v in np.percentile(values, percentiles)], steps
