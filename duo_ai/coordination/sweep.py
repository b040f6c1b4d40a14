"""Reward against the expert-query cost weight, and the area under that curve (one number per method).

A coordinator's decisions do not depend on the cost weight (it sees frames and the novice's
outputs, never its reward), so one set of evaluation episodes serves every weight: `reprice` gives
an episode's reward at any weight, exactly what the env would have charged at it on the same
episodes. It is the one place the cost is taken off stored episodes (evaluation's cost sweep,
calibration's choice at another weight, a study's always-agents).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from duo_ai.evaluation import EvalResult

COST_WEIGHTS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def trapezoid_auc(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Area under the piecewise-linear curve through (xs, ys), xs increasing."""
    xs, ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    if len(xs) != len(ys) or len(xs) < 2 or (np.diff(xs) <= 0).any():
        raise ValueError("trapezoid_auc needs two or more points with increasing x")
    return float(np.sum(np.diff(xs) * (ys[1:] + ys[:-1]) / 2))


def reprice(
    base_reward: Any, expert_steps: Any, switches: Any, weight: float, switch_weight: float, base_penalty: float
) -> np.ndarray:
    """Episodes' rewards at expert-query cost weight `weight`, from their base rewards (without
    costs), expert steps and switches: base reward - (weight x expert steps + switch_weight x
    switches) x base_penalty, as float64."""
    cost = weight * np.asarray(expert_steps, dtype=np.float64) + switch_weight * np.asarray(switches, dtype=np.float64)
    return np.asarray(base_reward, dtype=np.float64) - cost * base_penalty


def cost_sweep(
    result: EvalResult,
    base_penalty: float,
    switch_agent_cost_weight: float,
    weights: Sequence[float] = COST_WEIGHTS,
) -> dict[str, Any]:
    """Per-weight reward mean/std of the episodes in `result` (from a CoordinationEnv), and the AUC."""
    episodes = [result.extra[key] for key in ("base_reward", "expert_steps", "switches")]
    rows = []
    for w in weights:
        rewards = reprice(*episodes, w, switch_agent_cost_weight, base_penalty)
        rows.append(
            {
                "cost_weight": float(w),
                "reward_mean": float(rewards.mean()),
                "reward_std": float(rewards.std(ddof=1)) if len(rewards) > 1 else 0.0,
            }
        )
    return {"cost_sweep": rows, "auc": trapezoid_auc(weights, [row["reward_mean"] for row in rows])}
