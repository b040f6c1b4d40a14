"""The coordination environment: at every step a coordinator picks who acts, the novice or the expert.

`CoordinationEnv` wraps a base vector env (Procgen) and two base PPO agents. After every base
step it runs the novice once, batched over all envs, to get the novice's action, hidden features
and logits; the coordinator observes these with the frame. When the coordinator answers 1 for an
env, the expert acts there instead, and only those envs are given to the expert.

The agents' random choices are common random numbers: the Gumbel noise that turns an agent's
logits into a sampled action is a pure function of (seed, env, episode, step in the episode), the
same whichever agent acts and whatever the coordinator did before. Two coordinators evaluated with
the same seed therefore play identical episodes for as long as their decisions agree (a never-ask
coordinator plays exactly always-novice's episodes), which makes paired comparisons tight.

Reward: `base_reward - query_cost * asked - switch_cost * switched`, where `query_cost =
expert_query_cost_weight x base_penalty`, `switch_cost = switch_agent_cost_weight x base_penalty`,
and `switched` is 1 when the acting agent differs from the previous step's within the episode.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from duo_ai.coordination.config import CoordinationConfig
from duo_ai.core.rng import counter_uniforms
from duo_ai.policies.ppo import PPOPolicy

NOVICE, EXPERT = 0, 1


def _features_space(size: int) -> gym.spaces.Box:
    return gym.spaces.Box(-np.inf, np.inf, (size,), dtype=np.float32)


class CoordinationEnv(gym.vector.VectorEnv):
    """A vector env whose action per env is 0 (novice acts) or 1 (expert acts).

    Observations are dicts: `base_obs` (the frames), `novice_hidden`, `novice_logits`, and with
    `expert_visible` also `expert_hidden`, `expert_logits`. `info` adds per step `base_reward` (the
    game's reward, without costs) and `agent` (who acted); when episodes end, `info["episode"]`
    holds per env `r` (return with costs), `l` (length), `base_reward` (return without costs),
    `expert_steps` and `switches`, masked by `info["_episode"]`.
    """

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}

    def __init__(
        self,
        base_env: gym.vector.VectorEnv,
        novice: PPOPolicy,
        expert: PPOPolicy,
        config: CoordinationConfig,
        base_penalty: float,
        novice_env: dict[str, Any] | None = None,
        fit_novice: PPOPolicy | None = None,
        test_novice: PPOPolicy | None = None,
    ) -> None:
        self.base_env = base_env
        self.novice = novice
        self.expert = expert
        self.num_envs = base_env.num_envs
        self.base_penalty = base_penalty
        self.query_cost = config.expert_query_cost_weight * base_penalty
        self.switch_cost = config.switch_agent_cost_weight * base_penalty
        self.temperature = config.agent_temperature
        self.expert_visible = config.expert_visible
        # The `env` section the novice was trained with (from its checkpoint; None if unknown): where
        # a coordinator that models the novice's own experience (ood) watches it play alone.
        self.novice_env = novice_env
        # The novice a coordinator of this run fits itself to (ood's detector): the training split's.
        # In the realistic setting that is the sim novice, and the fit carries over to the real
        # novice acting at test time, as the benchmark's does. None = `novice`.
        self.fit_novice = fit_novice or novice
        self.test_novice = test_novice or novice  # the novice of the test split

        frame_space = base_env.single_observation_space
        spaces = {"base_obs": frame_space, **self._feature_spaces("novice", novice, frame_space)}
        if self.expert_visible:
            spaces.update(self._feature_spaces("expert", expert, frame_space))
        self.single_observation_space = gym.spaces.Dict(spaces)
        self.single_action_space = gym.spaces.Discrete(2)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)

        n = self.num_envs
        # Running totals of the current episodes, under their info["episode"] names.
        self._episode = {
            "r": np.zeros(n, dtype=np.float64),
            "l": np.zeros(n, dtype=np.int64),
            "base_reward": np.zeros(n, dtype=np.float64),
            "expert_steps": np.zeros(n, dtype=np.int64),
            "switches": np.zeros(n, dtype=np.int64),
        }
        self._prev_agent = np.full(n, -1, dtype=np.int64)  # -1: no one has acted yet this episode
        # Keys of the agents' common random numbers: the reset seed and each env's episode count.
        self._seed = 0
        self._episode_index = np.zeros(n, dtype=np.int64)
        self._frames: np.ndarray | None = None
        self._actions: dict[str, np.ndarray] = {}

    @staticmethod
    def _feature_spaces(role: str, agent: PPOPolicy, frame_space: gym.Space) -> dict[str, gym.Space]:
        """Shapes of an agent's hidden features and logits, read off one forward pass on a blank frame."""
        blank = np.zeros((1, *frame_space.shape), dtype=frame_space.dtype)
        _, out = agent.act(blank, temperature=0, return_model_output=True)
        return {
            f"{role}_hidden": _features_space(out.hidden.shape[-1]),
            f"{role}_logits": _features_space(out.logits.shape[-1]),
        }

    # -- gymnasium API -----------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict[str, np.ndarray], dict]:
        frames, info = self.base_env.reset(seed=seed, options=options)
        everyone = np.ones(self.num_envs, dtype=bool)
        self.novice.reset(everyone)
        self.expert.reset(everyone)
        for total in self._episode.values():
            total[:] = 0
        self._prev_agent[:] = -1
        self._seed = int(seed) if seed is not None else int(np.random.default_rng().integers(2**63))
        self._episode_index[:] = 0
        return self._observe(frames), info

    def step(self, actions: Any) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict]:
        if self._frames is None:
            raise RuntimeError("call reset() before step()")
        agent = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)
        if ((agent != NOVICE) & (agent != EXPERT)).any():
            raise ValueError(f"coordination actions must be 0 (novice) or 1 (expert), got {agent}")
        ask = agent == EXPERT
        game_actions = np.where(ask, self._expert_actions(ask), self._actions["novice"])

        frames, base_reward, terminated, truncated, info = self.base_env.step(game_actions)
        base_reward = np.asarray(base_reward, dtype=np.float32)
        switched = (self._prev_agent >= 0) & (self._prev_agent != agent)
        reward = (base_reward - self.query_cost * ask - self.switch_cost * switched).astype(np.float32)

        step = {"r": reward, "l": 1, "base_reward": base_reward, "expert_steps": ask, "switches": switched}
        for key, value in step.items():
            self._episode[key] += value
        done = np.asarray(terminated) | np.asarray(truncated)
        self._prev_agent = np.where(done, -1, agent)
        base_episode = info.get("episode", {})
        info = {k: v for k, v in info.items() if k not in ("episode", "_episode")}
        if "final_obs" in info:  # the coordinator's own view of each ended episode's last frame
            info["final_obs"] = self._final_observations(info["final_obs"], info["_final_obs"])
        info["base_reward"] = base_reward
        info["agent"] = agent
        if done.any():
            info["episode"] = {key: np.where(done, total, 0) for key, total in self._episode.items()}
            if "level_seed" in base_episode:
                info["episode"]["level_seed"] = base_episode["level_seed"]
            info["_episode"] = done.copy()
            for total in self._episode.values():
                total[done] = 0
            self._episode_index[done] += 1
        self.novice.reset(done)
        self.expert.reset(done)
        return self._observe(frames), reward, terminated, truncated, info

    def close(self, **kwargs: Any) -> None:
        self.base_env.close(**kwargs)

    # -- exact resume ------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """The base env's state, the episode totals, and the agents' pending actions and frames.

        The pending actions were sampled when the last observation was made; saving them (rather
        than sampling again on restore) keeps the random stream of a resumed run unchanged.
        """
        if self._frames is None:
            raise RuntimeError("call reset() before get_state()")
        return {
            "base": self.base_env.get_state(),
            "episode": {k: v.tolist() for k, v in self._episode.items()},
            "prev_agent": self._prev_agent.tolist(),
            "actions": {k: v.tolist() for k, v in self._actions.items()},
            "seed": self._seed,
            "episode_index": self._episode_index.tolist(),
        }

    def set_state(self, state: dict[str, Any]) -> dict[str, np.ndarray]:
        """Continue exactly where `get_state` was taken; returns the current observation."""
        self._frames = self.base_env.set_state(state["base"])
        for key, values in state["episode"].items():
            self._episode[key][:] = values
        self._prev_agent[:] = state["prev_agent"]
        # Checkpoints from before the agents' keyed sampling hold no keys: start the keys afresh.
        self._seed = state.get("seed", 0)
        self._episode_index[:] = state.get("episode_index", 0)
        pending = {k: np.asarray(v, dtype=np.int64) for k, v in state["actions"].items()}
        obs = self._observe(self._frames)  # recomputes features; the sampled actions are then restored
        self._actions = pending
        return obs

    # -- agents ------------------------------------------------------------------------------------
    def _observe(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        """The coordinator's observation; runs the novice (and a visible expert) once over all envs."""
        self._frames = frames
        obs = {"base_obs": frames, **self._run("novice", self.novice, frames)}
        if self.expert_visible:
            obs.update(self._run("expert", self.expert, frames))
        return obs

    def _run(self, role: str, agent: PPOPolicy, frames: np.ndarray) -> dict[str, np.ndarray]:
        features = self._features(role, agent, frames)
        self._actions[role] = self._sample(features[f"{role}_logits"], np.arange(self.num_envs))
        return features

    @staticmethod
    def _features(role: str, agent: PPOPolicy, frames: np.ndarray) -> dict[str, np.ndarray]:
        _, out = agent.act(frames, temperature=0, return_model_output=True)
        return {f"{role}_hidden": out.hidden.float().cpu().numpy(), f"{role}_logits": out.logits.float().cpu().numpy()}

    def _final_observations(self, frames: np.ndarray, ended: np.ndarray) -> np.ndarray:
        """The base env's last frames of ended episodes as coordinator observations (what PPO
        bootstraps from at a time limit); the agents' pending actions are left as they are."""
        idx = np.flatnonzero(ended)
        final = np.empty(self.num_envs, dtype=object)
        if len(idx) == 0:
            return final
        stacked = np.stack([frames[i] for i in idx])
        views = {"base_obs": stacked, **self._features("novice", self.novice, stacked)}
        if self.expert_visible:
            views.update(self._features("expert", self.expert, stacked))
        for k, i in enumerate(idx):
            final[i] = {key: value[k] for key, value in views.items()}
        return final

    def _expert_actions(self, ask: np.ndarray) -> np.ndarray:
        """Game actions of the expert for the envs in `ask` (other entries are unused zeros)."""
        if self.expert_visible:
            return self._actions["expert"]
        actions = np.zeros(self.num_envs, dtype=np.int64)
        if ask.any():
            _, out = self.expert.act(self._frames[ask], temperature=0, return_model_output=True)
            actions[ask] = self._sample(out.logits.float().cpu().numpy(), np.flatnonzero(ask))
        return actions

    def _sample(self, logits: np.ndarray, envs: np.ndarray) -> np.ndarray:
        """The agents' actions for `envs`, keyed on (seed, env, episode, step in the episode)."""
        keys = [envs, self._episode_index[envs], self._episode["l"][envs]]
        return keyed_sample(logits, self.temperature, self._seed, keys)


def keyed_sample(logits: np.ndarray, temperature: float, seed: int, keys: list[np.ndarray]) -> np.ndarray:
    """One action per row of `logits`, drawn from softmax(logits / temperature) (argmax at temperature
    0) by Gumbel-max, with the noise a pure function of `seed` and the row's `keys`."""
    if temperature == 0:
        return logits.argmax(axis=-1)
    gumbel = -np.log(-np.log(counter_uniforms(seed, keys, logits.shape[-1])))
    return (logits / temperature + gumbel).argmax(axis=-1)
