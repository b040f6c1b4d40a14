"""CoordinationEnv over tiny real novice/expert checkpoints: observations, costs, who runs, resets, errors."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

import duo_ai.coordination.penalty as penalty
from duo_ai.coordination.baselines import AlwaysPolicy, AlwaysPolicyConfig, RandomPolicy, RandomPolicyConfig
from duo_ai.coordination.env import keyed_sample
from duo_ai.core.errors import CheckpointError, ConfigError
from duo_ai.evaluation import evaluate
from tests.coord_fixtures import CONFIGS, agent_checkpoints, coordination_config, make_run_env, train

# coordination_config charges base_penalty 0.5: query cost 0.4 x 0.5, switch cost 0.3 x 0.5.
QUERY_COST, SWITCH_COST = 0.2, 0.15
SCRIPT = [[0, 1, 0, 1], [1, 1, 0, 0], [0, 1, 1, 0]]
# Hand-computed costs of SCRIPT: first step no switch charge (no previous agent), then
# env0 asks and switches (0.2 + 0.15), env3 switches back to the novice (0.15), ...
SCRIPT_COSTS = [[0.0, 0.2, 0.0, 0.2], [0.35, 0.2, 0.0, 0.15], [0.15, 0.2, 0.35, 0.0]]


@pytest.fixture(scope="module")
def agents(tmp_path_factory):
    return agent_checkpoints(tmp_path_factory)


def record_calls(obj, name: str, log: list, keep_output: bool = False) -> None:
    """Replace `obj.<name>` by a wrapper that appends its first argument (and output) to `log`."""
    original = getattr(obj, name)

    def wrapper(arg, *args, **kwargs):
        out = original(arg, *args, **kwargs)
        if keep_output:
            action = out[0] if isinstance(out, tuple) else out
            log.append((np.array(arg), np.asarray(action.cpu()).copy()))
        else:
            log.append(np.array(arg))
        return out

    setattr(obj, name, wrapper)


@pytest.fixture(scope="module")
def rollout(agents, tmp_path_factory):
    """One instrumented rollout on 4 envs: SCRIPT, then random choices until 3 episodes have ended."""
    config = coordination_config(
        agents, tmp_path_factory.mktemp("rollout"), "coordination.switch_agent_cost_weight=0.3"
    )
    env = make_run_env(config, "train", num_envs=4)
    calls = {"expert": [], "novice": [], "game": [], "novice_reset": [], "expert_reset": []}
    record_calls(env.expert, "act", calls["expert"])
    record_calls(env.novice, "act", calls["novice"])
    # The agents' sampled actions: env._sample(logits, envs) -> actions, novice first at each observation.
    samples = calls["sample"] = []
    sample = env._sample
    env._sample = lambda logits, envs: samples.append((logits, envs, sample(logits, envs))) or samples[-1][2]
    record_calls(env.base_env, "step", calls["game"])
    record_calls(env.novice, "reset", calls["novice_reset"])
    record_calls(env.expert, "reset", calls["expert_reset"])
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    steps, ended = [], 0
    while ended < 3:
        actions = np.array(SCRIPT[len(steps)]) if len(steps) < len(SCRIPT) else rng.integers(0, 2, 4)
        before, sampled = len(calls["expert"]), len(samples)
        frames, novice_action = np.array(obs["base_obs"]), samples[-1][2]
        obs, reward, terminated, truncated, info = env.step(actions)
        done = terminated | truncated
        steps.append(
            {
                "actions": actions,
                "frames": frames,
                "novice_action": novice_action,
                "expert_calls": calls["expert"][before:],
                "expert_samples": samples[sampled : len(samples) - 1],  # the last one is the next novice's
                "game_action": calls["game"][-1],
                "reward": reward,
                "info": info,
                "done": done,
            }
        )
        ended += int(done.sum())
    env.close()
    return steps, calls


def test_observation_keys_shapes_and_novice_features(agents, tmp_path):
    env = make_run_env(coordination_config(agents, tmp_path), "train", num_envs=3)
    try:
        obs, _ = env.reset(seed=1)
        assert set(obs) == {"base_obs", "novice_hidden", "novice_logits"}
        assert obs["base_obs"].shape == (3, 3, 64, 64) and obs["base_obs"].dtype == np.uint8
        assert obs["novice_hidden"].shape == (3, 256) and obs["novice_hidden"].dtype == np.float32
        assert obs["novice_logits"].shape == (3, 15) and obs["novice_logits"].dtype == np.float32
        assert env.single_action_space.n == 2 and env.observation_space.contains(obs)
        # The features are the novice's own forward pass on these frames.
        _, out = env.novice.act(obs["base_obs"], return_model_output=True)
        np.testing.assert_allclose(obs["novice_logits"], out.logits.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(obs["novice_hidden"], out.hidden.float().numpy(), rtol=1e-5, atol=1e-6)
    finally:
        env.close()
    env = make_run_env(coordination_config(agents, tmp_path, "coordination.expert_visible=true"), "test", 2)
    try:
        obs, _ = env.reset(seed=1)
        assert set(obs) == {"base_obs", "novice_hidden", "novice_logits", "expert_hidden", "expert_logits"}
        assert obs["expert_logits"].shape == (2, 15) and env.observation_space.contains(obs)
    finally:
        env.close()


def test_cost_arithmetic_matches_hand_computation(rollout):
    steps, _ = rollout
    for step, costs in zip(steps[: len(SCRIPT)], SCRIPT_COSTS, strict=True):
        assert not step["done"].any()  # the hand computation assumes one ongoing episode per env
        np.testing.assert_array_equal(step["info"]["agent"], step["actions"])
        np.testing.assert_allclose(step["info"]["base_reward"] - step["reward"], costs, atol=1e-6)


def test_episode_stats_add_up_the_step_rewards(rollout):
    steps, _ = rollout
    n = len(steps[0]["actions"])
    ret, base, length, asked, switches = (np.zeros(n) for _ in range(5))
    prev = np.full(n, -1)
    checked = 0
    for step in steps:
        a, info = step["actions"], step["info"]
        ret += step["reward"]
        base += info["base_reward"]
        length += 1
        asked += a
        switches += (prev >= 0) & (prev != a)
        prev = np.where(step["done"], -1, a)
        np.testing.assert_array_equal(info.get("_episode", np.zeros(n, bool)), step["done"])
        for i in np.flatnonzero(step["done"]):
            episode = {k: v[i] for k, v in info["episode"].items()}
            assert episode["r"] == pytest.approx(ret[i], abs=1e-4)
            assert episode["r"] == pytest.approx(base[i] - QUERY_COST * asked[i] - SWITCH_COST * switches[i], abs=1e-4)
            assert (episode["base_reward"], episode["l"]) == (base[i], length[i])
            assert (episode["expert_steps"], episode["switches"]) == (asked[i], switches[i])
            ret[i] = base[i] = length[i] = asked[i] = switches[i] = 0
            checked += 1
    assert checked >= 3


def test_expert_runs_only_for_the_envs_that_ask(rollout):
    steps, _ = rollout
    for step in steps:
        ask = step["actions"] == 1
        if not ask.any():
            assert step["expert_calls"] == []
            np.testing.assert_array_equal(step["game_action"], step["novice_action"])
            continue
        [frames] = step["expert_calls"]
        np.testing.assert_array_equal(frames, step["frames"][ask])  # exactly the askers' frames
        [(_, envs, expert_action)] = step["expert_samples"]
        np.testing.assert_array_equal(envs, np.flatnonzero(ask))
        np.testing.assert_array_equal(step["game_action"][ask], expert_action)
        np.testing.assert_array_equal(step["game_action"][~ask], step["novice_action"][~ask])
    assert any(not s["actions"].any() for s in steps) and any(s["actions"].all() for s in steps)
    # The novice runs once per observation, batched over all envs.
    _, calls = rollout
    assert len(calls["novice"]) == len(steps) + 1
    assert all(frames.shape[0] == 4 for frames in calls["novice"])


def test_both_agents_reset_with_the_done_mask(rollout):
    steps, calls = rollout
    expected = [np.ones(4, dtype=bool)] + [s["done"] for s in steps]
    for role in ("novice_reset", "expert_reset"):
        assert len(calls[role]) == len(expected)
        for got, want in zip(calls[role], expected, strict=True):
            np.testing.assert_array_equal(got, want)
    assert sum(s["done"].sum() for s in steps) >= 3


@pytest.mark.parametrize("agent, fraction", [("novice", 0.0), ("expert", 1.0)])
def test_always_baselines_give_expert_fraction_exactly_0_or_1(agents, tmp_path, agent, fraction):
    config = coordination_config(agents, tmp_path, "coordination.switch_agent_cost_weight=0.3")
    env = make_run_env(config, "test", num_envs=2)
    expert_calls = []
    record_calls(env.expert, "act", expert_calls)
    try:
        policy = AlwaysPolicy(AlwaysPolicyConfig(agent=agent), env)
        metrics = evaluate(policy, env, num_episodes=2, seed=5).metrics()
    finally:
        env.close()
    assert metrics["expert_fraction"] == fraction
    assert (len(expert_calls) > 0) == (agent == "expert")
    # No switches, so the only cost is the query cost on every expert step.
    cost = QUERY_COST * fraction * metrics["episode_length_mean"]
    assert metrics["reward_mean"] == pytest.approx(metrics["base_reward_mean"] - cost, abs=1e-4)


def test_base_penalty_is_measured_cached_and_keyed_by_the_expert_file(agents, tmp_path, monkeypatch):
    expert = tmp_path / "expert" / "last.ckpt"
    expert.parent.mkdir()
    shutil.copy2(agents["expert"], expert)
    overrides = (
        "coordination.base_penalty=null",
        "coordination.base_penalty_episodes=2",
        "evaluation.num_envs=2",
        f"train_expert={expert}",
    )
    config = coordination_config(agents, tmp_path, *overrides)
    # The expert samples its actions from torch's global generator, whose state depends on the tests
    # this worker ran before (pytest-xdist shares them out differently): seeded, the measurement is
    # the same on every run, and this tiny expert's 2 episodes earn more than 0 (a 0 is refused).
    torch.manual_seed(0)
    make_run_env(config, "train", num_envs=2).close()
    [entry] = json.loads((expert.parent / penalty.CACHE_FILE).read_text())
    assert config.coordination.base_penalty == entry["base_penalty"]
    assert entry["base_penalty"] == pytest.approx(entry["reward_mean"] / entry["length_mean"])
    assert entry["key"]["expert"] == str(expert.resolve()) and entry["key"]["episodes"] == 2

    def no_measuring(*args):
        raise AssertionError("measured again despite a cached value")

    monkeypatch.setattr(penalty, "measure_base_penalty", no_measuring)
    config = coordination_config(agents, tmp_path, *overrides)
    env = make_run_env(config, "test", num_envs=2)
    assert env.base_penalty == entry["base_penalty"] and env.query_cost == pytest.approx(0.4 * entry["base_penalty"])
    env.close()

    # A rewritten expert checkpoint (new mtime) invalidates the cached value.
    stat = expert.stat()
    os.utime(expert, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    measured = {"base_penalty": 0.25, "reward_mean": 5.0, "length_mean": 20.0}
    monkeypatch.setattr(penalty, "measure_base_penalty", lambda *args: measured)
    config = coordination_config(agents, tmp_path, *overrides)
    make_run_env(config, "train", num_envs=2).close()
    assert config.coordination.base_penalty == 0.25
    assert len(json.loads((expert.parent / penalty.CACHE_FILE).read_text())) == 2


@pytest.fixture(scope="module")
def coordinator_checkpoint(agents, tmp_path_factory):
    """A real coordinator checkpoint (always-novice baseline set up by the Trainer)."""
    root = tmp_path_factory.mktemp("coordinator")
    return train(
        root,
        "always",
        [f"train_novice={agents['novice']}", f"train_expert={agents['expert']}", "coordination.base_penalty=0.5"],
        config_path=CONFIGS / "procgen_always.yaml",
    )


@pytest.mark.parametrize(
    "override, error, fragments",
    [
        ("train_novice={missing}", CheckpointError, ["train_novice", "not found"]),
        ("train_novice={not_a_checkpoint}", CheckpointError, ["train_novice", "not a duo-ai checkpoint"]),
        ("train_novice={coordinator}", CheckpointError, ["train_novice", "coordinator checkpoint"]),
        ("test_expert={coordinator}", CheckpointError, ["test_expert", "coordinator checkpoint"]),
        ("train_expert={other_game}", CheckpointError, ["procgen/starpilot", "procgen/bigfish", "same game"]),
        ("env.task=bigfish", CheckpointError, ["procgen/starpilot", "coordination env is procgen/bigfish"]),
        ("train_expert=null", ConfigError, ["train_expert is not set"]),
    ],
)
def test_bad_agents_give_one_line_errors(agents, coordinator_checkpoint, tmp_path, override, error, fragments):
    not_a_checkpoint = tmp_path / "notes.ckpt"
    not_a_checkpoint.write_text("not a checkpoint")
    paths = {
        "missing": tmp_path / "missing.ckpt",
        "not_a_checkpoint": not_a_checkpoint,
        "coordinator": coordinator_checkpoint,
        "other_game": agents["other_game"],
    }
    config = coordination_config(agents, tmp_path, override.format(**paths))
    with pytest.raises(error) as info:
        make_run_env(config, "train", num_envs=2)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_keyed_sampling_draws_from_the_softmax(temperature):
    logits = np.array([2.0, 1.0, 0.0, -1.0, 0.5], dtype=np.float32)
    n = 40_000
    keys = [np.arange(n) % 7, np.arange(n) // 7, np.zeros(n, dtype=np.int64)]
    actions = keyed_sample(np.tile(logits, (n, 1)), temperature, seed=3, keys=keys)
    expected = np.exp(logits / temperature) / np.exp(logits / temperature).sum()
    np.testing.assert_allclose(np.bincount(actions, minlength=5) / n, expected, atol=0.01)
    # A pure function of (seed, keys): the same keys in another order give the same actions.
    order = np.random.default_rng(0).permutation(n)
    again = keyed_sample(np.tile(logits, (n, 1)), temperature, seed=3, keys=[k[order] for k in keys])
    np.testing.assert_array_equal(again, actions[order])
    other_seed = keyed_sample(np.tile(logits, (n, 1)), temperature, seed=4, keys=keys)
    assert 0.2 < (other_seed != actions).mean() < 0.9
    assert (keyed_sample(np.tile(logits, (3, 1)), 0, seed=3, keys=[np.arange(3)]) == 0).all()  # argmax


def test_never_asking_plays_exactly_always_novices_episodes(agents, tmp_path):
    """Common random numbers: whatever draws the coordinator makes, the agents' noise is keyed on
    (seed, env, episode, step), so coordinators that decide alike play identical episodes."""

    def run(policy_cls, policy_config, seed):
        env = make_run_env(coordination_config(agents, tmp_path), "test", num_envs=2)
        try:
            metrics = evaluate(policy_cls(policy_config, env), env, num_episodes=4, seed=seed).metrics()
        finally:
            env.close()
        return {k: metrics[k] for k in ("episode_returns", "episode_lengths", "episode_level_seeds")}

    never = run(RandomPolicy, RandomPolicyConfig(prob=0.0), seed=7)  # draws torch.rand at every step
    assert never == run(AlwaysPolicy, AlwaysPolicyConfig(agent="novice"), seed=7)
    assert run(RandomPolicy, RandomPolicyConfig(prob=1.0), seed=7) == run(
        AlwaysPolicy, AlwaysPolicyConfig(agent="expert"), seed=7
    )
    assert run(AlwaysPolicy, AlwaysPolicyConfig(agent="novice"), seed=8) != never  # other seed, other episodes
