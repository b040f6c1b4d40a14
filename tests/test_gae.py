"""GAE and returns against a hand computation, with terminations and time-limit truncations."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from duo_ai.algorithms.ppo import compute_gae
from duo_ai.build import build_run
from duo_ai.config import load_config


def hand_gae(rewards, values, ends, next_value, gamma, lam):
    """Straight from the definition: delta_t = r_t + g V_{t+1} (1-d_t) - V_t; A_t = sum (g l)^k delta."""
    T = len(rewards)
    v_next = [*values[1:], next_value]
    deltas = [rewards[t] + gamma * v_next[t] * (1 - ends[t]) - values[t] for t in range(T)]
    adv = []
    for t in range(T):
        total, discount = 0.0, 1.0
        for k in range(t, T):
            total += discount * deltas[k]
            if ends[k]:
                break
            discount *= gamma * lam
        adv.append(total)
    return adv


def test_gae_matches_hand_computation_with_terminations():
    rewards = [1.0, 0.0, 2.0, -1.0, 0.5, 3.0]
    values = [0.5, 0.2, 1.0, 0.3, -0.2, 0.8]
    ends = [0, 1, 0, 0, 1, 0]  # episodes end after steps 1 and 4
    next_value, gamma, lam = 0.7, 0.9, 0.8
    adv, ret = compute_gae(
        torch.tensor(rewards)[:, None],
        torch.tensor(values)[:, None],
        torch.tensor(ends, dtype=torch.float32)[:, None],
        torch.tensor([next_value]),
        gamma,
        lam,
    )
    expected = hand_gae(rewards, values, ends, next_value, gamma, lam)
    np.testing.assert_allclose(adv[:, 0].numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(ret[:, 0].numpy(), np.array(expected) + np.array(values), rtol=1e-6)
    # Step 1 ends its episode: its advantage is r - V with no bootstrap, and ignores what follows.
    assert adv[1, 0].item() == np.float32(0.0 - 0.2)
    # Step 4 also ends one, so the last step's bootstrap from next_value does not leak into it.
    assert abs(adv[4, 0].item() - (0.5 - (-0.2))) < 1e-6


def test_gae_columns_are_independent_envs():
    torch.manual_seed(0)
    rewards, values = torch.randn(5, 3), torch.randn(5, 3)
    ends = (torch.rand(5, 3) < 0.3).float()
    next_value = torch.randn(3)
    adv, _ = compute_gae(rewards, values, ends, next_value, 0.99, 0.95)
    for env in range(3):
        expected = hand_gae(
            rewards[:, env].tolist(), values[:, env].tolist(), ends[:, env].tolist(), next_value[env].item(), 0.99, 0.95
        )
        np.testing.assert_allclose(adv[:, env].numpy(), expected, rtol=1e-5, atol=1e-6)


def test_gamma_one_lambda_one_gives_monte_carlo_returns():
    rewards = torch.tensor([[1.0], [2.0], [3.0]])
    values = torch.tensor([[10.0], [10.0], [10.0]])
    ends = torch.tensor([[0.0], [0.0], [1.0]])
    _, ret = compute_gae(rewards, values, ends, torch.tensor([99.0]), 1.0, 1.0)
    assert ret[:, 0].tolist() == [6.0, 5.0, 3.0]


class Endless(gym.Env):
    """Reward 1 every step, never terminates; the observation is the step count. Time limit: 3 steps."""

    observation_space = gym.spaces.Box(0.0, 10.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([float(self.t)], np.float32), 1.0, False, False, {}


gym.register("DuoTest/Endless-v0", entry_point=Endless, max_episode_steps=3)


@pytest.mark.parametrize("clip", [None, 0.1])
def test_time_limit_truncation_bootstraps_with_the_final_value(clip):
    """A cut episode's last reward gets gamma * V(final obs); its advantage is the hand-computed one.
    With `reward_clip` the game's reward is clipped, not the bootstrap added to it."""
    gamma = 0.9
    r = 1.0 if clip is None else clip
    config = load_config(
        "configs/cartpole.yaml",
        [
            "env.task=DuoTest/Endless-v0",
            "env.num_envs=2",
            "algorithm.num_steps=6",
            "algorithm.num_minibatches=1",
            "algorithm.normalize_reward=false",
            f"algorithm.gamma={gamma}",
            "algorithm.gae_lambda=1.0",
            f"algorithm.reward_clip={'null' if clip is None else clip}",
        ],
    )
    run = build_run(config, log=lambda message: None)
    try:
        ppo = run.algorithm
        ppo.collect_rollout()
        advantages, _ = ppo.compute_advantages()
        v = {t: float(ppo.policy.value(np.array([[t]], np.float32))[0]) for t in range(4)}
    finally:
        run.close()
    # Steps 0..5 see observations 0, 1, 2, 0, 1, 2; the time limit cuts after steps 2 and 5.
    assert ppo.rollout.dones[:, 0].tolist() == [0, 0, 1, 0, 0, 1]
    last = r + gamma * v[3]  # the cut step's reward, bootstrapped from V(final observation = 3)
    assert clip is None or abs(last) > clip  # beyond the clip: had the bootstrap been clipped too, the test would tell
    assert ppo.rollout.rewards[:, 0].tolist() == pytest.approx([r, r, last, r, r, last], abs=1e-6)
    # lambda = 1: A_0 = r_0 + g r_1 + g^2 (r_2 + g V(3)) - V(0), the same for the second episode.
    expected = r + gamma * r + gamma**2 * last - v[0]
    assert advantages[0, 0].item() == pytest.approx(expected, abs=1e-5)
    assert advantages[3, 1].item() == pytest.approx(expected, abs=1e-5)
    assert advantages[2, 0].item() == pytest.approx(last - v[2], abs=1e-5)
