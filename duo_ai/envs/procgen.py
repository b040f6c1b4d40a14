"""Procgen games as a gymnasium vector environment, on procgen's native batched engine.

`ProcgenGym3Env` steps all environments in C (no per-env Python loop) and resets finished
episodes itself: after `act`, `observe()` returns the reward of that action and `first[i]`, which
is True when the returned frame starts a new episode, i.e. the action just taken ended one. That is
gymnasium's same-step autoreset: `terminated[i]` is True and `obs[i]` is already the next
episode's first frame.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from typing import Any

import gymnasium as gym
import numpy as np

from duo_ai.core.errors import EnvError

GAMES = (
    "bigfish",
    "bossfight",
    "caveflyer",
    "chaser",
    "climber",
    "coinrun",
    "dodgeball",
    "fruitbot",
    "heist",
    "jumper",
    "leaper",
    "maze",
    "miner",
    "ninja",
    "plunder",
    "starpilot",
)
DISTRIBUTION_MODES = ("easy", "hard", "extreme", "memory", "exploration")
NUM_ACTIONS = 15


def import_procgen() -> Any:
    """Import procgen quietly: it imports the unmaintained `gym`, which prints a notice on import."""
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        import procgen
    return procgen


class ProcgenVecEnv(gym.vector.VectorEnv):
    """`num_envs` copies of one Procgen game; channel-first uint8 frames [N, 3, 64, 64].

    The frames are a transposed view of procgen's [N, 64, 64, 3] buffer: logically channel-first,
    laid out channels-last in memory, which is what channels-last convolutions want.
    `info["episode"]` holds the return `r` and length `l` of episodes that ended this step, masked
    by `info["_episode"]`; `info["level_seed"]` and `info["prev_level_complete"]` come from procgen.
    """

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}

    def __init__(
        self,
        game: str,
        num_envs: int,
        distribution_mode: str = "easy",
        start_level: int = 0,
        num_levels: int = 0,
        num_threads: int = 0,
        seed: int = 0,
    ) -> None:
        if game not in GAMES:
            raise EnvError(f"unknown Procgen game {game!r}; choose one of: {', '.join(GAMES)}")
        if distribution_mode not in DISTRIBUTION_MODES:
            raise EnvError(
                f"unknown distribution_mode {distribution_mode!r}; choose one of: {', '.join(DISTRIBUTION_MODES)}"
            )
        if num_envs < 1 or start_level < 0 or num_levels < 0:
            raise EnvError("num_envs must be >= 1 and start_level, num_levels >= 0")
        self.game = game
        self.num_envs = num_envs
        self.distribution_mode = distribution_mode
        self.start_level = start_level
        self.num_levels = num_levels
        self.num_threads = num_threads
        self._seed = seed
        self.single_observation_space = gym.spaces.Box(0, 255, (3, 64, 64), dtype=np.uint8)
        self.single_action_space = gym.spaces.Discrete(NUM_ACTIONS)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self._engine = None
        self._returns = np.zeros(num_envs, dtype=np.float64)
        self._lengths = np.zeros(num_envs, dtype=np.int64)

    def _make_engine(self, seed: int) -> Any:
        procgen = import_procgen()
        kwargs = dict(
            num=self.num_envs,
            env_name=self.game,
            distribution_mode=self.distribution_mode,
            start_level=self.start_level,
            num_levels=self.num_levels,
            rand_seed=seed,
        )
        if self.num_threads > 0:
            kwargs["num_threads"] = self.num_threads
        return procgen.ProcgenGym3Env(**kwargs)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        """Start fresh episodes. Procgen seeds only at creation, so a seed rebuilds the engine."""
        if seed is not None:
            self._seed = seed
        if self._engine is not None:
            self._engine.close()
        self._engine = self._make_engine(self._seed)
        self._returns[:] = 0
        self._lengths[:] = 0
        _, obs, _ = self._engine.observe()
        return self._frames(obs), self._level_info()

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        if self._engine is None:
            raise RuntimeError("call reset() before step()")
        self._engine.act(np.asarray(actions, dtype=np.int32))
        reward, obs, first = self._engine.observe()
        reward = reward.astype(np.float32)
        self._returns += reward
        self._lengths += 1
        info = self._level_info()
        if first.any():
            info["episode"] = {
                "r": np.where(first, self._returns, 0.0),
                "l": np.where(first, self._lengths, 0),
                "level_seed": np.where(first, info.pop("prev_level_seed"), 0),  # the level just played
            }
            info["_episode"] = first.copy()
            self._returns[first] = 0
            self._lengths[first] = 0
        truncated = np.zeros(self.num_envs, dtype=bool)
        return self._frames(obs), reward, first.copy(), truncated, info

    # -- exact resume ------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """Every game's state (procgen serialises levels, positions and its RNGs) and the running
        episode totals: plain bytes and lists, for a checkpoint."""
        if self._engine is None:
            raise RuntimeError("call reset() before get_state()")
        return {"games": self._engine.get_state(), "returns": self._returns.tolist(), "lengths": self._lengths.tolist()}

    def set_state(self, state: dict[str, Any]) -> np.ndarray:
        """Continue exactly where `get_state` was taken; returns the current frames."""
        if len(state["games"]) != self.num_envs:
            raise EnvError(f"saved state holds {len(state['games'])} environments, this env has {self.num_envs}")
        if self._engine is None:
            self._engine = self._make_engine(self._seed)
        self._engine.set_state(state["games"])
        self._returns[:] = state["returns"]
        self._lengths[:] = state["lengths"]
        _, obs, _ = self._engine.observe()
        return self._frames(obs)

    def _level_info(self) -> dict:
        infos = self._engine.get_info()
        return {
            "level_seed": np.array([i["level_seed"] for i in infos], dtype=np.int64),
            "prev_level_seed": np.array([i["prev_level_seed"] for i in infos], dtype=np.int64),
            "prev_level_complete": np.array([i["prev_level_complete"] for i in infos], dtype=bool),
        }

    @staticmethod
    def _frames(obs: dict) -> np.ndarray:
        return obs["rgb"].transpose(0, 3, 1, 2)

    def close(self, **kwargs: Any) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None
