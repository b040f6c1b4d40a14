"""The Procgen vector env on the real engine: spaces, episodes, level splits, reset(done)."""

import numpy as np
import pytest
import torch

from duo_ai.algorithms.ppo import PPO, PPOConfig
from duo_ai.core.errors import EnvError
from duo_ai.envs import GAMES, ProcgenVecEnv
from duo_ai.policies.ppo import PPOPolicy, PPOPolicyConfig


def run_random(env: ProcgenVecEnv, steps: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    history = [(obs, None, None, info)]
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(rng.integers(0, 15, env.num_envs))
        history.append((obs, reward, terminated, info))
    return history


def test_spaces_shapes_dtypes():
    env = ProcgenVecEnv("starpilot", num_envs=3, distribution_mode="hard")
    obs, info = env.reset(seed=0)
    assert env.single_observation_space.shape == (3, 64, 64)
    assert env.single_action_space.n == 15
    assert obs.shape == (3, 3, 64, 64) and obs.dtype == np.uint8
    assert env.observation_space.contains(np.ascontiguousarray(obs))
    obs, reward, terminated, truncated, info = env.step(np.zeros(3, dtype=np.int64))
    assert reward.shape == (3,) and reward.dtype == np.float32
    assert terminated.dtype == bool and truncated.dtype == bool and not truncated.any()
    assert info["level_seed"].shape == (3,)
    env.close()


def test_all_sixteen_games_build_and_step():
    assert len(GAMES) == 16
    for game in GAMES:
        env = ProcgenVecEnv(game, num_envs=1)
        obs, _ = env.reset(seed=0)
        obs, *_ = env.step(np.array([4]))
        assert obs.shape == (1, 3, 64, 64)
        env.close()


def test_episode_returns_and_lengths_match_the_steps_taken():
    env = ProcgenVecEnv("coinrun", num_envs=8, num_levels=0, seed=0)
    returns, lengths = np.zeros(8), np.zeros(8, dtype=int)
    reported = 0
    for _obs, reward, terminated, info in run_random(env, 1500)[1:]:
        returns += reward
        lengths += 1
        if terminated.any():
            assert info["_episode"].tolist() == terminated.tolist()
            for i in np.flatnonzero(terminated):
                assert info["episode"]["l"][i] == lengths[i]
                assert info["episode"]["r"][i] == pytest.approx(returns[i])
                assert lengths[i] <= 1000  # coinrun's time limit
                reported += 1
            returns[terminated], lengths[terminated] = 0, 0
        else:
            assert "_episode" not in info
    assert reported >= 8
    env.close()


def test_termination_starts_a_new_level():
    env = ProcgenVecEnv("coinrun", num_envs=4, num_levels=0, seed=1)
    history = run_random(env, 1200)
    changes = 0
    for (_, _, _, before), (_, _, terminated, after) in zip(history, history[1:], strict=False):
        changed = before["level_seed"] != after["level_seed"]
        # The level changes exactly when an episode ended (and unlimited levels never repeat here).
        assert (changed == terminated).all()
        changes += int(terminated.sum())
    assert changes > 0
    env.close()


def test_level_splits_stay_inside_their_range():
    env = ProcgenVecEnv("coinrun", num_envs=4, start_level=100, num_levels=5, seed=0)
    seeds = {int(s) for *_, info in run_random(env, 1500) for s in info["level_seed"]}
    assert seeds and seeds <= set(range(100, 105))
    assert len(seeds) > 1
    env.close()


def test_same_seed_same_levels_different_seed_different_levels():
    def level_sequence(seed):
        env = ProcgenVecEnv("coinrun", num_envs=2, num_levels=0, seed=0)
        history = run_random(env, 600, seed=seed)
        env.close()
        return [tuple(h[3]["level_seed"]) for h in history], history[-1][0]

    a_levels, a_obs = level_sequence(7)
    b_levels, b_obs = level_sequence(7)
    c_levels, _ = level_sequence(8)
    assert a_levels == b_levels and np.array_equal(a_obs, b_obs)
    assert a_levels[0] != c_levels[0]


def test_bad_game_and_mode_are_clear_errors():
    with pytest.raises(EnvError, match="unknown Procgen game 'coinrun2'"):
        ProcgenVecEnv("coinrun2", 1)
    with pytest.raises(EnvError, match="distribution_mode"):
        ProcgenVecEnv("coinrun", 1, distribution_mode="medium")


class RecordingPolicy(PPOPolicy):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.resets: list[np.ndarray] = []

    def reset(self, done):
        self.resets.append(np.array(done))
        super().reset(done)


class RecordingEnv(ProcgenVecEnv):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.dones: list[np.ndarray] = []

    def step(self, actions):
        out = super().step(actions)
        self.dones.append(out[2] | out[3])
        return out


def test_ppo_calls_reset_with_the_done_mask_after_every_step():
    # starpilot: an untrained agent's episodes last ~80 steps, so episodes end inside 300 steps
    # whatever the actions (coinrun's may not, depending on the RNG the tests before left).
    torch.manual_seed(0)
    env = RecordingEnv("starpilot", num_envs=4, num_levels=1, seed=0)
    policy = RecordingPolicy(PPOPolicyConfig(model={"name": "impala_ppo", "channels": [4, 4, 4]}), env)
    config = PPOConfig(num_steps=300, num_minibatches=4, update_epochs=1, total_timesteps=1200)
    PPO(config, policy, env).collect_rollout()
    assert len(policy.resets) == len(env.dones) == 300
    assert all(np.array_equal(r, d) for r, d in zip(policy.resets, env.dones, strict=True))
    assert any(r.any() for r in policy.resets)  # episodes did end inside the rollout
    env.close()
