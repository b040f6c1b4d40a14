"""Evaluate a policy over exactly N complete episodes.

Each of the E parallel envs is given a fixed quota of episodes (N // E, plus one for the first
N % E envs) and only its first `quota` episodes count. Taking "the first N episodes to finish"
instead would over-sample short episodes, which for most games are the failed ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from duo_ai.core.policy import Policy

# Level-sampling seed offset of evaluation episodes, apart from training seeds (a run's split i
# uses seed + EVAL_SEED_OFFSET * (i + 1); `duo-ai eval`, `video` and `ask-map` use `level_sampling_seed`).
EVAL_SEED_OFFSET = 10_000


def level_sampling_seed(seed: int) -> int:
    """The level-sampling seed of the episodes `--seed seed` plays, the same in `duo-ai eval`,
    `video` and `ask-map` (so a study's ask maps show the episodes of its table)."""
    return seed + EVAL_SEED_OFFSET


@dataclass
class EvalResult:
    """Per-episode returns and lengths, plus any other per-episode stats the env reports (`extra`)."""

    split: str
    temperature: float
    returns: list[float]
    lengths: list[float]
    extra: dict[str, list[float]] = field(default_factory=dict)

    @property
    def num_episodes(self) -> int:
        return len(self.returns)

    def metrics(self) -> dict[str, Any]:
        """Summary as plain JSON-able values: reward mean/std/95% CI, lengths, per-episode returns."""
        returns = np.asarray(self.returns, dtype=np.float64)
        std = float(returns.std(ddof=1)) if len(returns) > 1 else 0.0
        out: dict[str, Any] = {
            "split": self.split,
            "temperature": self.temperature,
            "num_episodes": self.num_episodes,
            "reward_mean": float(returns.mean()),
            "reward_std": std,
            "reward_ci95": 1.96 * std / math.sqrt(len(returns)) if len(returns) > 1 else 0.0,
            "episode_length_mean": float(np.mean(self.lengths)),
        }
        out["episode_returns"] = [float(r) for r in returns]
        out["episode_lengths"] = [int(n) for n in self.lengths]
        for key, values in self.extra.items():
            arr = np.asarray(values, dtype=np.float64)
            # Per episode, in the same order for every policy evaluated with the same seed and
            # number of envs (each env plays a fixed sequence of levels): paired comparisons.
            out[f"episode_{key if key.endswith('s') else key + 's'}"] = arr.tolist()
            if key.endswith("_seed"):
                continue  # an identifier, not a quantity
            out[f"{key}_mean"] = float(arr.mean())
            out[f"{key}_std"] = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
            if key.endswith("_steps"):
                # A per-episode step count `<x>_steps` (e.g. the coordination env's `expert_steps`)
                # also gives `<x>_fraction` of all evaluated steps: a mean of per-episode fractions
                # would over-weight short episodes.
                out[f"{key.removesuffix('_steps')}_fraction"] = float(arr.sum() / np.sum(self.lengths))
        return out


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """`metrics` without the per-episode lists (`episode_*`), for summaries and log lines."""
    return {k: v for k, v in metrics.items() if not k.startswith("episode_") or not isinstance(v, list)}


def episode_quotas(num_episodes: int, num_envs: int) -> np.ndarray:
    quotas = np.full(num_envs, num_episodes // num_envs, dtype=np.int64)
    quotas[: num_episodes % num_envs] += 1
    return quotas


@dataclass
class Step:
    """One step of every env: what `watch` saw before it, what the envs answered, and which envs counted."""

    seen: Any
    terminated: np.ndarray
    truncated: np.ndarray
    info: dict[str, Any]
    counting: np.ndarray  # the envs still short of their quota when the step was taken
    ended: np.ndarray  # indices of the envs whose counted episode ended at this step


def play_episodes(
    policy: Policy,
    env: gym.vector.VectorEnv,
    num_episodes: int,
    temperature: float,
    seed: int,
    watch: Callable[[Any], Any] = lambda obs: None,
) -> Iterator[Step]:
    """Run `policy` on `env` (reset with `seed`) until every env has finished its quota of episodes,
    yielding each step; `watch(obs)` is called before each step (a frame, the agents' cells)."""
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
    quotas = episode_quotas(num_episodes, env.num_envs)
    counts = np.zeros(env.num_envs, dtype=np.int64)
    obs, _ = env.reset(seed=seed)
    policy.eval()
    policy.reset(np.ones(env.num_envs, dtype=bool))
    while (counts < quotas).any():
        seen = watch(obs)
        action = policy.act(obs, temperature=temperature)
        obs, _, terminated, truncated, info = env.step(np.asarray(action.cpu()))
        policy.reset(terminated | truncated)
        counting = counts < quotas
        mask = info.get("_episode")
        ended = np.flatnonzero(mask & counting) if mask is not None else np.empty(0, dtype=np.int64)
        counts[ended] += 1
        yield Step(seen, terminated, truncated, info, counting, ended)


def evaluate(
    policy: Policy,
    env: gym.vector.VectorEnv,
    num_episodes: int,
    temperature: float = 1.0,
    seed: int = 0,
    split: str = "test",
) -> EvalResult:
    """Run `policy` on `env` until every env has finished its quota of episodes."""
    per_env: list[list[dict[str, float]]] = [[] for _ in range(env.num_envs)]
    for step in play_episodes(policy, env, num_episodes, temperature, seed):
        for i in step.ended:
            per_env[i].append({k: float(np.asarray(v)[i]) for k, v in step.info["episode"].items()})
    episodes = [e for env_episodes in per_env for e in env_episodes]
    extra_keys = [k for k in episodes[0] if k not in ("r", "l", "t")]
    return EvalResult(
        split=split,
        temperature=temperature,
        returns=[e["r"] for e in episodes],
        lengths=[e["l"] for e in episodes],
        extra={k: [e[k] for e in episodes] for k in extra_keys},
    )
