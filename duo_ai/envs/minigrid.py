"""MiniGrid grid worlds as a gymnasium vector environment, with Procgen-style level seeds.

Each copy is one MiniGrid env stepped in a Python loop (a step is microseconds of Python). The
observation is the agent's egocentric 7x7 view, MiniGrid's symbolic `image` (object, colour and
state index per cell) as channel-first uint8 [N, 3, 7, 7]. The agent's direction is not a separate
input: the view is already rotated so that the agent faces up, as in MiniGrid's `ImgObsWrapper`.

Levels: MiniGrid builds a layout (and a start position, where it is random) from the seed of
`reset`. Episode k of env i plays level `start_level + (h(seed, i, k) mod num_levels)` (any level
from `start_level` on when `num_levels` is 0), h a counter-based hash, so disjoint
`[start_level, start_level + num_levels)` ranges give disjoint train, validation and test levels, and
the level sequence is a pure function of the reset seed. Episodes reset as soon as they end (same-
step autoreset, as Procgen): the step that ends one returns the next episode's first view, with the
last view in `info["final_obs"]`. MiniGrid's step limit is a truncation, bootstrapped by PPO.

The view: MiniGrid's own `gen_obs` (run inside every `step` and `reset`) builds it from Grid
objects, with a slice, up to four rotations and a visibility pass in Python loops: about three
quarters of a step's time. For the env types in `fast_view_types` (checked to read nothing from
`gen_obs` in their own `step` and `reset`, and tested cell for cell against MiniGrid's view),
`gen_obs` is replaced by a no-op on each env and `egocentric_view` computes the same image from
lists of the grid's objects: the window of `get_view_exts` (Wall outside the grid), the rotation of
`rotate_left` done `agent_dir + 1` times as one precomputed permutation, `process_vis`'s visibility
pass ported as is (opacity from each object's `see_behind`), and the carried object at the agent's
cell. Other env types keep MiniGrid's `gen_obs`.

Exact resume: an env's state is its level seed and the actions taken so far in the episode; MiniGrid
is deterministic given both, so `set_state` replays them.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import itertools
import signal
import threading
from typing import Any

import gymnasium as gym
import numpy as np

from duo_ai.core.checks import INT32_MAX
from duo_ai.core.errors import EnvError
from duo_ai.core.rng import counter_uniforms

VIEW_SHAPE = (3, 7, 7)
# The largest index MiniGrid writes in each channel of the view (object, colour, state):
# models scale by these rather than by 255, which would squash them towards 0.
VIEW_MAX = (10, 5, 2)


@functools.cache
def fast_view_types() -> tuple[type, ...]:
    """MiniGrid env types whose `step` and `reset` never read `gen_obs`, so `egocentric_view` can stand in."""
    from minigrid import envs

    names = ("CrossingEnv", "DistShiftEnv", "DoorKeyEnv", "DynamicObstaclesEnv", "EmptyEnv", "FourRoomsEnv")
    return tuple(getattr(envs, name) for name in (*names, "KeyCorridorEnv", "LavaGapEnv"))


@functools.cache
def _view_order(n: int) -> tuple[list[int], ...]:
    """Per agent direction, for each view cell in [x][y] order, its index in the row-major n x n slice.

    Applies Grid.rotate_left (new[j][n - 1 - i] = old[i][j]) `direction + 1` times, as gen_obs_grid does.
    """
    grid = [[j * n + i for j in range(n)] for i in range(n)]
    orders = []
    for _ in range(4):
        rotated = [[0] * n for _ in range(n)]
        for i in range(n):
            for j in range(n):
                rotated[j][n - 1 - i] = grid[i][j]
        grid = rotated
        orders.append([grid[x][y] for x in range(n) for y in range(n)])
    return tuple(orders)


@functools.cache
def _outside_and_empty() -> tuple[Any, tuple[int, int, int]]:
    """What Grid.slice puts outside the grid (a Wall), and the code of a visible empty cell."""
    from minigrid.core.constants import OBJECT_TO_IDX
    from minigrid.core.world_object import Wall

    return Wall(), (OBJECT_TO_IDX["empty"], 0, 0)


def _visible(clear: list[bool], n: int) -> list[bool]:
    """Grid.process_vis on a flat [x][y] list (cell (i, j) at k = i * n + j): which view cells the agent
    at (n // 2, n - 1) sees. Same sweeps, rows from the agent's up, each rightwards over i < n - 1 then
    leftwards over i > 0, a seen cell that does not block opening its neighbours."""
    mask = [False] * (n * n)
    mask[(n // 2) * n + n - 1] = True
    last = (n - 1) * n
    for j in range(n - 1, -1, -1):
        for k in range(j, j + last, n):
            if mask[k] and clear[k]:
                mask[k + n] = True
                if j:
                    mask[k + n - 1] = mask[k - 1] = True
        for k in range(j + last, j, -n):
            if mask[k] and clear[k]:
                mask[k - n] = True
                if j:
                    mask[k - n - 1] = mask[k - 1] = True
    return mask


def egocentric_view(env: Any) -> np.ndarray:
    """The `image` of MiniGrid's `gen_obs` for an unwrapped env: uint8 [n, n, 3], n its agent_view_size."""
    n = env.agent_view_size
    outside, empty = _outside_and_empty()
    top_x, top_y, _, _ = env.get_view_exts()
    width, height, cells = env.grid.width, env.grid.height, env.grid.grid
    # The agent is inside its view window, so the window always overlaps the grid's columns.
    lo, hi = max(top_x, 0), min(top_x + n, width)
    pad_left, pad_right = [outside] * (lo - top_x), [outside] * (top_x + n - hi)
    window: list[Any] = []
    for y in range(top_y, top_y + n):
        if 0 <= y < height:
            window += pad_left + cells[y * width + lo : y * width + hi] + pad_right
        else:
            window += [outside] * n
    objs = [window[k] for k in _view_order(n)[env.agent_dir]]
    if env.see_through_walls:
        mask = [True] * (n * n)
    else:
        mask = _visible([obj is None or obj.see_behind() for obj in objs], n)
    # The agent sees what it carries at its own cell, whatever lies under it.
    objs[(n // 2) * n + n - 1] = env.carrying
    codes = [
        (empty if obj is None else obj.encode()) if seen else (0, 0, 0) for obj, seen in zip(objs, mask, strict=True)
    ]
    # A bytearray of the flat codes is several times faster than np.array over 49 tuples.
    return np.frombuffer(bytearray(itertools.chain.from_iterable(codes)), dtype=np.uint8).reshape(n, n, 3)


def _no_obs() -> None:
    """Stands in for `gen_obs` on envs whose view `egocentric_view` computes: `step` and `reset` return it."""
    return None


def minigrid_ids() -> list[str]:
    """Every registered MiniGrid env id (importing `minigrid` registers them)."""
    import minigrid  # noqa: F401  registers the MiniGrid-* ids

    return sorted(env_id for env_id in gym.registry if env_id.startswith("MiniGrid-"))


def check_task(task: str) -> None:
    """Refuse an id that MiniGrid does not register, naming the closest ones."""
    ids = minigrid_ids()
    if task in ids:
        return
    close = difflib.get_close_matches(task, ids, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "e.g. MiniGrid-DistShift2-v0 or MiniGrid-LavaGapS7-v0"
    raise EnvError(f"unknown MiniGrid id {task!r}; {hint}")


# A task's constructor arguments are tried by building and stepping one env before any work: some
# never return (an Empty room too small for the agent loops forever placing it) or need gigabytes.
KWARGS_CHECK_SECONDS = 5
# Arguments that would open a window or change what the agents see.
REFUSED_KWARGS = {
    "render_mode": "duo-ai renders frames itself (duo-ai video)",
    "agent_view_size": "the models see a 7x7 view",
}


def check_kwargs(task: str, kwargs: dict[str, Any]) -> None:
    """Refuse `env.kwargs` that do not make a working `task`: one line naming the argument or the error."""
    if not kwargs:
        return
    for key, why in REFUSED_KWARGS.items():
        if key in kwargs:
            raise EnvError(f"env.kwargs.{key} cannot be set: {why}; remove it")
    max_steps = kwargs.get("max_steps")
    if max_steps is not None and (not isinstance(max_steps, int) or isinstance(max_steps, bool) or max_steps < 1):
        raise EnvError(f"env.kwargs.max_steps={max_steps!r} must be a whole number >= 1 (an episode's step limit)")
    try:
        with time_limit(KWARGS_CHECK_SECONDS):
            env = gym.make(task, **kwargs).unwrapped
            try:
                env.reset(seed=0)
                env.step(0)
            finally:
                env.close()
    except TimeoutError:
        raise EnvError(
            f"env.kwargs {kwargs} make no {task} within {KWARGS_CHECK_SECONDS} s (a grid too small or too large?); "
            "change them"
        ) from None
    except (Exception, MemoryError) as e:
        first = (str(e).strip().splitlines() or [""])[0]
        raise EnvError(
            f"env.kwargs do not fit {task}: {kwargs} ({type(e).__name__}: {first}); a config's kwargs are for its "
            "own task: drop them with env.kwargs={} (or one with ~env.kwargs.NAME), or change them"
        ) from None


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise TimeoutError in the block after `seconds` (a real-time alarm: main thread only, else no limit)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise TimeoutError

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class MiniGridVecEnv(gym.vector.VectorEnv):
    """`num_envs` copies of one MiniGrid env; observations [N, 3, 7, 7] uint8 (object, colour, state).

    `info["episode"]` holds the return `r`, length `l` and `level_seed` of episodes that ended this
    step, masked by `info["_episode"]`; `info["level_seed"]` is each env's current level. `fast_view`
    False keeps MiniGrid's own `gen_obs` for every env type (the reference `egocentric_view` is tested
    against).
    """

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}

    def __init__(
        self,
        task: str,
        num_envs: int,
        start_level: int = 0,
        num_levels: int = 0,
        kwargs: dict[str, Any] | None = None,
        seed: int = 0,
        fast_view: bool = True,
    ) -> None:
        check_task(task)
        if num_envs < 1 or start_level < 0 or num_levels < 0:
            raise EnvError("num_envs must be >= 1 and start_level, num_levels >= 0")
        self.task = task
        self.num_envs = num_envs
        self.start_level = start_level
        self.num_levels = num_levels
        self.kwargs = dict(kwargs or {})
        try:
            self.envs = [gym.make(task, **self.kwargs).unwrapped for _ in range(num_envs)]
        except TypeError as e:
            raise EnvError(f"env.kwargs do not fit {task} ({e}); pass only arguments of its constructor") from None
        self.fast_view = fast_view and type(self.envs[0]) in fast_view_types()
        if self.fast_view:
            # MiniGrid's step and reset build the view with gen_obs, the bulk of their time; a no-op
            # on the instance skips it, and _view computes the same image with egocentric_view.
            for env in self.envs:
                env.gen_obs = _no_obs
        self.single_observation_space = gym.spaces.Box(0, 255, VIEW_SHAPE, dtype=np.uint8)
        self.single_action_space = gym.spaces.Discrete(int(self.envs[0].action_space.n))
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self._seed = seed
        self._obs = np.zeros((num_envs, *VIEW_SHAPE), dtype=np.uint8)
        self._returns = np.zeros(num_envs, dtype=np.float64)
        self._lengths = np.zeros(num_envs, dtype=np.int64)
        self._episode_index = np.zeros(num_envs, dtype=np.int64)
        self._level_seeds = np.zeros(num_envs, dtype=np.int64)
        self._actions: list[list[int]] = [[] for _ in range(num_envs)]
        self._started = False

    # -- levels ------------------------------------------------------------------------------------
    def _level_seed(self, i: int) -> int:
        span = self.num_levels if self.num_levels > 0 else INT32_MAX + 1 - self.start_level
        u = counter_uniforms(self._seed, [np.array([i]), np.array([self._episode_index[i]])], 1)[0, 0]
        return self.start_level + min(int(u * span), span - 1)

    def _view(self, env: Any, obs: Any) -> np.ndarray:
        """The view [3, n, n] after a step or reset of `env` that returned `obs`."""
        return (egocentric_view(env) if self.fast_view else obs["image"]).transpose(2, 0, 1)

    def _start_episode(self, i: int) -> None:
        self._level_seeds[i] = self._level_seed(i)
        obs, _ = self.envs[i].reset(seed=int(self._level_seeds[i]))
        self._obs[i] = self._view(self.envs[i], obs)
        self._returns[i] = 0.0
        self._lengths[i] = 0
        self._actions[i] = []

    # -- gymnasium API -----------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        """Start every env on its first level of the sequence that `seed` (default: the last one) picks."""
        if seed is not None:
            self._seed = int(seed)
        self._episode_index[:] = 0
        for i in range(self.num_envs):
            self._start_episode(i)
        self._started = True
        return self._obs.copy(), {"level_seed": self._level_seeds.copy()}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        if not self._started:
            raise RuntimeError("call reset() before step()")
        actions = np.asarray(actions, dtype=np.int64)
        rewards = np.zeros(self.num_envs, dtype=np.float32)
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        ended: dict[int, tuple[np.ndarray, float, int, int]] = {}
        for i, env in enumerate(self.envs):
            obs, reward, term, trunc, _ = env.step(int(actions[i]))
            self._actions[i].append(int(actions[i]))
            self._returns[i] += reward
            self._lengths[i] += 1
            rewards[i], terminated[i], truncated[i] = reward, term, trunc and not term
            view = self._view(env, obs)
            if term or trunc:
                ended[i] = (view.copy(), self._returns[i], self._lengths[i], self._level_seeds[i])
                self._episode_index[i] += 1
                self._start_episode(i)
            else:
                self._obs[i] = view
        info: dict[str, Any] = {"level_seed": self._level_seeds.copy()}
        if ended:
            done = np.zeros(self.num_envs, dtype=bool)
            done[list(ended)] = True
            final_obs = np.empty(self.num_envs, dtype=object)
            episode = {
                "r": np.zeros(self.num_envs),
                "l": np.zeros(self.num_envs, dtype=np.int64),
                "level_seed": np.zeros(self.num_envs, dtype=np.int64),
            }
            for i, (view, ret, length, level) in ended.items():
                final_obs[i] = view
                episode["r"][i], episode["l"][i], episode["level_seed"][i] = ret, length, level
            info.update(episode=episode, _episode=done, final_obs=final_obs, _final_obs=done.copy())
        return self._obs.copy(), rewards, terminated, truncated, info

    # -- where the agents are (videos, ask maps) ---------------------------------------------------
    def render_frame(self, i: int, tile_size: int = 16) -> np.ndarray:
        """Env `i`'s whole grid as RGB [H, W, 3] uint8, the agent's view highlighted."""
        return self.envs[i].get_frame(highlight=True, tile_size=tile_size)

    def agent_cells(self) -> np.ndarray:
        """Each env's agent position [N, 2] as (x, y) grid cells."""
        return np.array([env.agent_pos for env in self.envs], dtype=np.int64)

    def grid_size(self) -> tuple[int, int]:
        """(width, height) of the grid in cells."""
        return int(self.envs[0].width), int(self.envs[0].height)

    # -- exact resume ------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """The level sequence's seed, each env's episode index and the actions of its current episode."""
        if not self._started:
            raise RuntimeError("call reset() before get_state()")
        return {
            "seed": self._seed,
            "episode_index": self._episode_index.tolist(),
            "actions": [list(a) for a in self._actions],
            "returns": self._returns.tolist(),
        }

    def set_state(self, state: dict[str, Any]) -> np.ndarray:
        """Continue exactly where `get_state` was taken, by replaying each episode's actions."""
        if len(state["actions"]) != self.num_envs:
            raise EnvError(f"saved state holds {len(state['actions'])} environments, this env has {self.num_envs}")
        self._seed = int(state["seed"])
        self._episode_index[:] = state["episode_index"]
        for i, actions in enumerate(state["actions"]):
            self._start_episode(i)
            env = self.envs[i]
            for action in actions:
                obs = env.step(int(action))[0]
            if actions:
                self._obs[i] = self._view(env, obs)
            self._actions[i] = [int(a) for a in actions]
            self._lengths[i] = len(actions)
        self._returns[:] = state["returns"]
        self._started = True
        return self._obs.copy()

    def close(self, **kwargs: Any) -> None:
        for env in self.envs:
            env.close()
