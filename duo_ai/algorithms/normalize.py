"""Reward scaling by a running standard deviation of discounted returns (no mean shift)."""

from __future__ import annotations

import numpy as np


class ReturnNormalizer:
    """Divides rewards by the running std of each env's discounted return.

    This is the reward normalisation of the Procgen baselines: it keeps value targets near unit
    scale across games whose rewards differ by orders of magnitude.
    """

    def __init__(self, num_envs: int, gamma: float, epsilon: float = 1e-8) -> None:
        self.gamma = gamma
        self.epsilon = epsilon
        self.returns = np.zeros(num_envs, dtype=np.float64)
        self.mean = 0.0
        self.var = 1.0
        self.count = epsilon

    def __call__(self, reward: np.ndarray, done: np.ndarray) -> np.ndarray:
        self.returns = self.returns * self.gamma + reward
        self._update(self.returns)
        self.returns[done] = 0.0
        return (reward / np.sqrt(self.var + self.epsilon)).astype(np.float32)

    def _update(self, x: np.ndarray) -> None:
        # Chan et al. parallel mean/variance update.
        batch_mean, batch_var, batch_count = float(x.mean()), float(x.var()), x.size
        delta = batch_mean - self.mean
        total = self.count + batch_count
        self.mean += delta * batch_count / total
        m2 = self.var * self.count + batch_var * batch_count + delta**2 * self.count * batch_count / total
        self.var = m2 / total
        self.count = total

    def state_dict(self) -> dict:
        return {"returns": self.returns.tolist(), "mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        returns = np.asarray(state["returns"], dtype=np.float64)
        if returns.shape == self.returns.shape:
            self.returns = returns  # the discounted returns in flight: exact when the env state is restored too
        self.mean, self.var, self.count = float(state["mean"]), float(state["var"]), float(state["count"])
