"""Reward scaling by a running standard deviation of discounted returns (no mean shift)."""

from __future__ import annotations

from collections.abc import Callable

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
        self._update_moments(float(x.mean()), float(x.var()), x.size)

    def _update_moments(self, batch_mean: float, batch_var: float, batch_count: int) -> None:
        # Chan et al. parallel mean/variance update.
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


class SharedReturnNormalizer(ReturnNormalizer):
    """`ReturnNormalizer` over the environments of all processes of a data-parallel run.

    Each process keeps its own envs' discounted returns; the running mean and variance are those of
    all `total_envs` returns, as one process stepping every env would have them. Rather than one
    collective per step, a rollout records each step's raw rewards and the sum and sum of squares
    of its returns; `normalise` sums those over processes once (`all_reduce`) and replays the
    running update step by step, scaling each step's rewards by the std as of that step.
    """

    def __init__(
        self,
        num_envs: int,
        gamma: float,
        total_envs: int,
        all_reduce: Callable[[np.ndarray], np.ndarray],
        epsilon: float = 1e-8,
    ) -> None:
        super().__init__(num_envs, gamma, epsilon)
        self.total_envs = total_envs
        self.all_reduce = all_reduce
        self.raw: list[np.ndarray] = []
        self.sums: list[tuple[float, float]] = []

    def __call__(self, reward: np.ndarray, done: np.ndarray) -> np.ndarray:
        """Record a step; returns the raw reward (scaled later by `normalise`)."""
        self.returns = self.returns * self.gamma + reward
        self.raw.append(np.array(reward, dtype=np.float64))
        self.sums.append((float(self.returns.sum()), float(np.square(self.returns).sum())))
        self.returns[done] = 0.0
        return reward

    def normalise(self) -> np.ndarray:
        """The recorded steps' rewards [T, num_envs], each divided by the running std at its step."""
        sums = self.all_reduce(np.asarray(self.sums, dtype=np.float64).reshape(-1, 2))
        scaled = np.empty((len(self.raw), self.returns.size), dtype=np.float32)
        for t, (total, squares) in enumerate(sums.tolist()):  # plain floats, as the state must be
            mean = total / self.total_envs
            self._update_moments(mean, max(squares / self.total_envs - mean * mean, 0.0), self.total_envs)
            scaled[t] = self.raw[t] / np.sqrt(self.var + self.epsilon)
        self.raw, self.sums = [], []
        return scaled
