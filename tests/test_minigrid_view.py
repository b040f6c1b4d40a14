"""The fast MiniGrid view: cell for cell MiniGrid's own `gen_obs` image, and the same vec env trajectories."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from duo_ai.envs.minigrid import MiniGridVecEnv, egocentric_view

# (task, kwargs, whether it has doors and things to carry)
SPECS = [
    ("MiniGrid-DistShift1-v0", {}, False),
    ("MiniGrid-DistShift1-v0", {"agent_start_pos": None}, False),
    ("MiniGrid-DistShift2-v0", {}, False),
    ("MiniGrid-DoorKey-5x5-v0", {}, True),
    ("MiniGrid-DoorKey-8x8-v0", {}, True),
    ("MiniGrid-LavaGapS5-v0", {}, False),
    ("MiniGrid-LavaGapS7-v0", {}, False),
    ("MiniGrid-Dynamic-Obstacles-8x8-v0", {}, False),
    ("MiniGrid-SimpleCrossingS9N1-v0", {}, False),
    ("MiniGrid-LavaCrossingS9N1-v0", {}, False),
    ("MiniGrid-Empty-6x6-v0", {}, False),
    ("MiniGrid-FourRooms-v0", {}, False),
    ("MiniGrid-KeyCorridorS3R1-v0", {}, True),
]


def curious_actions(env: MiniGridVecEnv, rng: np.random.Generator) -> np.ndarray:
    """Uniform over all 7 actions half the time, else what the cell in front invites (pick up, open, drop),
    so that doors open and close and objects get carried within a few hundred steps."""
    actions = rng.integers(0, 7, env.num_envs)
    for i, e in enumerate(env.envs):
        if rng.random() < 0.5:
            continue
        front = e.grid.get(*e.front_pos)
        if front is not None and front.can_pickup() and e.carrying is None:
            actions[i] = e.actions.pickup
        elif front is not None and front.type in ("door", "box"):
            actions[i] = e.actions.toggle
        elif front is None and e.carrying is not None:
            actions[i] = e.actions.drop
    return actions


def minigrid_image(env: Any) -> np.ndarray:
    """MiniGrid's own view as the vec env lays it out; the class method, as the instance's is shadowed."""
    return type(env).gen_obs(env)["image"].transpose(2, 0, 1)


@pytest.mark.parametrize("task,kwargs,doors", SPECS, ids=lambda v: v if isinstance(v, str) else None)
def test_fast_view_is_minigrids_view_at_every_step(task: str, kwargs: dict, doors: bool) -> None:
    # A short step limit: many levels (and the views right after autoresets) within 200 steps.
    env = MiniGridVecEnv(task, 3, kwargs={**kwargs, "max_steps": 50}, seed=7)
    assert env.fast_view
    rng = np.random.default_rng(0)
    obs, _ = env.reset()
    carried = opened = closed = resets = 0
    for _ in range(200):
        for i, e in enumerate(env.envs):
            np.testing.assert_array_equal(obs[i], minigrid_image(e))
            carried += e.carrying is not None
            for cell in e.grid.grid:
                if cell is not None and cell.type == "door":
                    opened += cell.is_open
                    closed += not cell.is_open and not cell.is_locked
        obs, _, term, trunc, _ = env.step(curious_actions(env, rng))
        resets += int(np.sum(term | trunc))
    assert resets >= 9
    if doors:
        assert carried and opened and closed


@pytest.mark.parametrize("size", [3, 5, 9])
def test_other_view_sizes(size: int) -> None:
    for task in ("MiniGrid-DoorKey-8x8-v0", "MiniGrid-LavaGapS7-v0", "MiniGrid-Empty-8x8-v0"):
        env = gym.make(task, agent_view_size=size).unwrapped
        rng = np.random.default_rng(size)
        env.reset(seed=size)
        for _ in range(100):
            np.testing.assert_array_equal(egocentric_view(env), env.gen_obs()["image"])
            _, _, term, trunc, _ = env.step(int(rng.integers(0, 7)))
            if term or trunc:
                env.reset(seed=int(rng.integers(1000)))


def assert_same_step(a: tuple, b: tuple) -> None:
    for x, y in zip(a[:4], b[:4], strict=True):
        np.testing.assert_array_equal(x, y)
    info_a, info_b = a[4], b[4]
    assert info_a.keys() == info_b.keys()
    np.testing.assert_array_equal(info_a["level_seed"], info_b["level_seed"])
    if "_episode" in info_a:
        np.testing.assert_array_equal(info_a["_episode"], info_b["_episode"])
        for key in ("r", "l", "level_seed"):
            np.testing.assert_array_equal(info_a["episode"][key], info_b["episode"][key])
        for i in np.flatnonzero(info_a["_final_obs"]):
            np.testing.assert_array_equal(info_a["final_obs"][i], info_b["final_obs"][i])


@pytest.mark.parametrize(
    "task",
    [
        "MiniGrid-DoorKey-5x5-v0",
        "MiniGrid-LavaGapS5-v0",
        "MiniGrid-Dynamic-Obstacles-8x8-v0",
        "MiniGrid-KeyCorridorS3R1-v0",
    ],
)
def test_vec_env_trajectory_and_resume_match_minigrids_own_view(task: str) -> None:
    kwargs = {"max_steps": 60}
    fast = MiniGridVecEnv(task, 4, kwargs=kwargs, seed=3)
    reference = MiniGridVecEnv(task, 4, kwargs=kwargs, seed=3, fast_view=False)
    assert fast.fast_view and not reference.fast_view
    np.testing.assert_array_equal(fast.reset()[0], reference.reset()[0])
    rng = np.random.default_rng(1)
    ended = 0
    for t in range(300):
        actions = curious_actions(fast, rng)
        out = fast.step(actions)
        assert_same_step(out, reference.step(actions))
        ended += int(np.sum(out[2] | out[3]))
        if t == 150:
            # A resumed fast env replays the episodes so far and then goes on in step with the others.
            resumed = MiniGridVecEnv(task, 4, kwargs=kwargs)
            np.testing.assert_array_equal(resumed.set_state(fast.get_state()), out[0])
        elif t > 150:
            assert_same_step(resumed.step(actions), out)
    assert ended >= 20
    np.testing.assert_array_equal(fast.agent_cells(), reference.agent_cells())
    assert fast.grid_size() == reference.grid_size()
    np.testing.assert_array_equal(fast.render_frame(0), reference.render_frame(0))


def test_other_env_types_keep_minigrids_gen_obs() -> None:
    env = MiniGridVecEnv("MiniGrid-Unlock-v0", 2)
    assert not env.fast_view and "gen_obs" not in vars(env.envs[0])
    env.reset()
    env.step(np.zeros(2, dtype=np.int64))
