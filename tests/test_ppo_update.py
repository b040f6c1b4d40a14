"""PPO's update against numbers worked out by hand, its `target_kl` early stop and its `reward_clip`.

Each test builds the PPO of a real CartPole run (`configs/cartpole.yaml`: a small MLP, a few
milliseconds an update) exactly as `duo-ai train` builds it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from duo_ai.algorithms.ppo import RolloutBatch
from duo_ai.build import build_run
from duo_ai.config import load_config
from tests.conftest import assert_user_error, cli

# 4 envs x 32 steps, 4 minibatches of 32 rows, 4 epochs: 16 minibatch steps an update.
SMALL = ["env.num_envs=4", "algorithm.num_steps=32", "algorithm.num_minibatches=4", "algorithm.update_epochs=4"]


def build(*overrides: str):
    return build_run(load_config("configs/cartpole.yaml", [*SMALL, *overrides]), log=lambda message: None)


@pytest.fixture
def ppo_of():
    """build(...)'s algorithm; every run built is closed at the end of the test."""
    runs = []

    def make(*overrides: str):
        runs.append(build(*overrides))
        return runs[-1].algorithm

    yield make
    for run in runs:
        run.close()


# -- the clipped loss, by hand -------------------------------------------------------------------

# The policy's heads are set so that, whatever the observation, pi = [1/4, 3/4] and V = 1.
# Each row: action, ratio pi_new / pi_old (through the stored log-probability), advantage, old value, return.
ROWS = [
    (1, 1.5, 2.0, 0.5, 2.0),  # A > 0, ratio above 1 + clip: the gain is capped at 1.2 * A
    (0, 0.5, 1.0, 1.0, 0.0),  # A > 0, ratio below 1 - clip: the unclipped 0.5 * A is the smaller
    (0, 0.5, -1.0, 1.1, 1.5),  # A < 0, ratio below 1 - clip: the loss is that of 0.8 * A
    (1, 1.1, -2.0, 2.0, 0.0),  # inside [0.8, 1.2]: no clipping
]
# Worked out by hand with clip_coef = 0.2:
# policy loss  = mean(max(-A r, -A clip(r))) = mean(-2.4, -0.5, 0.8, 2.2) = 0.1 / 4
PG_LOSS = 0.025
# value loss, clipped: V_clip = V_old + clamp(1 - V_old, -0.2, 0.2) = 0.7, 1.0, 1.0, 1.8;
# 0.5 * mean(max((1 - R)^2, (V_clip - R)^2)) = 0.5 * mean(1.69, 1, 0.25, 3.24) = 0.5 * 6.18 / 4
V_LOSS = 0.7725
# unclipped: 0.5 * mean(1, 1, 0.25, 1)
V_LOSS_UNCLIPPED = 0.40625
# entropy of [1/4, 3/4]: (1/4) ln 4 + (3/4) ln (4/3)
ENTROPY = 0.25 * math.log(4) + 0.75 * math.log(4 / 3)
# approx_kl = mean((r - 1) - ln r), clip fraction = share of |r - 1| > 0.2 (three of four)
APPROX_KL = (0.5 - math.log(1.5) + 2 * (-0.5 - math.log(0.5)) + 0.1 - math.log(1.1)) / 4
CLIP_FRACTION = 0.75


def hand_batch(ppo) -> RolloutBatch:
    with torch.no_grad():
        heads = ppo.policy.model.heads
        heads.policy.weight.zero_()
        heads.policy.bias.copy_(torch.tensor([0.0, math.log(3.0)]))  # softmax: [1/4, 3/4]
        heads.value.weight.zero_()
        heads.value.bias.fill_(1.0)
    actions, ratios, advantages, values, returns = (torch.tensor(column) for column in zip(*ROWS, strict=True))
    new_logprob = torch.log(torch.tensor([0.25, 0.75]))[actions]
    return RolloutBatch(
        obs=torch.randn(len(ROWS), 4),  # any observation: the heads ignore it
        actions=actions,
        logprobs=new_logprob - torch.log(ratios.double()).float(),
        advantages=advantages,
        returns=returns,
        values=values,
    )


@pytest.mark.parametrize("clip_vloss", [True, False])
def test_the_clipped_loss_is_the_hand_computed_one(ppo_of, clip_vloss):
    ppo = ppo_of(
        "algorithm.norm_adv=false",
        "algorithm.clip_coef=0.2",
        "algorithm.ent_coef=0.01",
        "algorithm.vf_coef=0.5",
        f"algorithm.clip_vloss={str(clip_vloss).lower()}",
    )
    loss, stats = ppo.minibatch_loss(hand_batch(ppo))
    v_loss = V_LOSS if clip_vloss else V_LOSS_UNCLIPPED
    expected = [PG_LOSS, v_loss, ENTROPY, APPROX_KL, CLIP_FRACTION]
    assert stats.tolist() == pytest.approx(expected, abs=1e-6)
    assert loss.item() == pytest.approx(PG_LOSS - 0.01 * ENTROPY + 0.5 * v_loss, abs=1e-6)
    # The gradient reaches the policy through the unclipped rows only: rows 0 and 2 are clipped.
    loss.backward()
    assert ppo.policy.model.heads.policy.bias.grad.abs().sum() > 0


# -- target_kl -----------------------------------------------------------------------------------


def record_kls(ppo) -> list[float]:
    """The approx_kl of each minibatch step the update takes, as PPO computes it."""
    kls, step = [], ppo.update_minibatch

    def recording(mb, adv_moments=None):
        stats = step(mb, adv_moments)
        kls.append(stats[3].item())
        return stats

    ppo.update_minibatch = recording
    return kls


def adam_steps(ppo) -> int:
    return int(next(iter(ppo.optimizer.state_dict()["state"].values()))["step"])


def test_target_kl_stops_the_update_at_the_first_minibatch_over_it(ppo_of):
    target = 1e-4
    ppo = ppo_of(f"algorithm.target_kl={target}")
    kls = record_kls(ppo)
    stats = ppo.train_iteration()
    assert 1 < len(kls) < 16, kls  # the first minibatch trains the rollout's own policy: ratio 1
    assert kls[-1] > target and all(kl <= target for kl in kls[:-1])
    assert stats["loss/minibatches"] == len(kls) == adam_steps(ppo)
    assert stats["loss/approx_kl"] == pytest.approx(np.mean(kls), rel=1e-5)  # the mean over those steps


def test_a_target_kl_never_reached_changes_nothing(ppo_of):
    plain = ppo_of()  # each built (seeding the RNGs) and trained before the next is built
    a = plain.train_iteration()
    far = ppo_of("algorithm.target_kl=1000")
    b = far.train_iteration()
    assert b.pop("loss/minibatches") == 16 and "loss/minibatches" not in a
    assert {k: v for k, v in a.items() if k.startswith("loss/")} == {
        k: v for k, v in b.items() if k.startswith("loss/")
    }
    weights = [ppo.policy.get_params() for ppo in (plain, far)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


# -- reward_clip ---------------------------------------------------------------------------------


def test_reward_clip_clips_the_normalised_rewards(ppo_of):
    plain = ppo_of("algorithm.normalize_reward=true")
    plain.collect_rollout()
    scaled = plain.rollout.rewards.clone()
    limit = float(scaled.mean())  # some rewards above it, some below
    assert (scaled > limit).any() and (scaled < limit).any()
    clipped = ppo_of("algorithm.normalize_reward=true", f"algorithm.reward_clip={limit}")
    clipped.collect_rollout()
    # The normaliser scales the game's rewards as without the clip; the clip applies after it.
    assert torch.equal(clipped.rollout.rewards, scaled.clamp(-limit, limit))
    assert clipped.normalizer.state_dict() == plain.normalizer.state_dict()


@pytest.mark.parametrize("key", ["target_kl", "reward_clip"])
def test_a_target_kl_or_reward_clip_that_is_not_positive_is_one_line(key):
    assert_user_error(cli("train", f"algorithm.{key}=0"), f"algorithm.{key}=0.0 is not allowed", "a number > 0")
    assert_user_error(cli("train", f"algorithm.{key}=-1"), f"algorithm.{key}=-1.0 is not allowed")
