"""GAE and returns against a hand computation, with terminations inside the rollout."""

import numpy as np
import torch

from duo_ai.algorithms.ppo import compute_gae


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
