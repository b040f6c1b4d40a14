"""Gymnasium environments (e.g. CartPole-v1) behind the same vector API as Procgen."""

from __future__ import annotations

import gymnasium as gym

from duo_ai.core.errors import EnvError


def make_gym_vec_env(task: str, num_envs: int) -> gym.vector.VectorEnv:
    """A synchronous vector env with same-step autoreset and episode statistics in `info`."""
    try:
        env = gym.make_vec(
            task,
            num_envs=num_envs,
            vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
        )
    except gym.error.Error as e:
        raise EnvError(f"cannot make gymnasium env {task!r} ({e}); use an id such as CartPole-v1") from None
    return gym.wrappers.vector.RecordEpisodeStatistics(env)
