"""Gymnasium environments (e.g. CartPole-v1) behind the same vector API as Procgen."""

from __future__ import annotations

import difflib

import gymnasium as gym

from duo_ai.core.errors import EnvError


def check_gym_id(task: str) -> None:
    """Refuse an id that gymnasium has not registered, naming the closest ones.

    gymnasium reads `module:EnvId` as "import `module`, then make EnvId": an id from a config or a
    checkpoint would run code. Only an id already in the registry is accepted, so nothing is imported
    (a user's own env is registered by a module they name with `--import`).
    """
    if ":" not in task and task in gym.registry:
        return
    close = difflib.get_close_matches(task.rpartition(":")[2], list(gym.registry), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "use a registered id such as CartPole-v1"
    why = "an id may not name a module to import" if ":" in task else "gymnasium has no such id"
    raise EnvError(
        f"unknown gymnasium env {task!r} ({why}); {hint} (an env of your own: register it in a module "
        "passed with --import)"
    )


def make_gym_vec_env(task: str, num_envs: int) -> gym.vector.VectorEnv:
    """A synchronous vector env with same-step autoreset and episode statistics in `info`."""
    check_gym_id(task)
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
