"""Training coordinators: PPO over every feature_type, baseline calibration, scores, and the AUC."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from duo_ai.config import load_config
from duo_ai.coordination.baselines import CALIBRATION_SEED_OFFSET, SCORES, LogitPolicy, reselect
from duo_ai.coordination.env import EXPERT
from duo_ai.coordination.sweep import COST_WEIGHTS, cost_sweep, trapezoid_auc
from duo_ai.core.checkpoint import load_checkpoint
from duo_ai.core.errors import ConfigError
from duo_ai.eval_job import evaluate_checkpoint
from duo_ai.evaluation import EvalResult, evaluate
from duo_ai.models.impala import FEATURE_TYPES
from duo_ai.training import Trainer
from tests.coord_fixtures import CHANNELS, CONFIGS, GAME, TINY, TINY_PPO, agent_checkpoints, make_run_env, train


@pytest.fixture(scope="module")
def agents(tmp_path_factory):
    return agent_checkpoints(tmp_path_factory)


def agent_overrides(agents) -> list[str]:
    return [f"train_novice={agents['novice']}", f"train_expert={agents['expert']}", "coordination.base_penalty=0.5"]


@pytest.mark.parametrize("feature_type", FEATURE_TYPES)
def test_every_feature_type_trains_an_iteration_and_its_checkpoint_evaluates(agents, tmp_path, feature_type):
    overrides = [
        *agent_overrides(agents),
        *TINY_PPO,
        f"policy.model.feature_type={feature_type}",
        f"policy.model.channels={CHANNELS}",
        "env.num_envs=2",
        "algorithm.num_steps=16",
        "algorithm.total_timesteps=32",
    ]
    ckpt = train(tmp_path, feature_type, overrides, config_path=CONFIGS / "procgen_ppo.yaml")
    payload = load_checkpoint(ckpt)
    assert payload["iteration"] == 1 and payload["global_step"] == 32
    assert payload["optim_state_dict"]["state"], "no optimizer step was taken"
    assert payload["policy_config"]["model"]["feature_type"] == feature_type
    # The IMPALA encoder exists exactly when the coordinator looks at the frames.
    has_encoder = any(k.startswith("encoder.") for k in payload["model_state_dict"])
    assert has_encoder == ("obs" in feature_type.split("_"))

    metrics = evaluate_checkpoint(str(ckpt), split="test", num_episodes=1)
    assert metrics["num_episodes"] == 1
    assert metrics["expert_fraction"] == pytest.approx(metrics["expert_steps_mean"] / metrics["episode_length_mean"])
    # No switch cost: reward = base reward - 0.4 x 0.5 per expert step.
    expected = metrics["base_reward_mean"] - 0.2 * metrics["expert_steps_mean"]
    assert metrics["reward_mean"] == pytest.approx(expected, abs=1e-4)


def test_ppo_stores_coordination_observations_in_their_own_dtypes(agents, tmp_path):
    config = load_config(
        CONFIGS / "procgen_ppo.yaml",
        [*agent_overrides(agents), *TINY, *TINY_PPO, f"experiments_dir={tmp_path}", f"env.task={GAME}"],
    )
    trainer = Trainer(config, show_progress=False)
    try:
        buffers = trainer.parts.algorithm.rollout.obs.data
        assert buffers["base_obs"].dtype == torch.uint8 and buffers["base_obs"].shape[-3:] == (3, 64, 64)
        assert buffers["novice_hidden"].dtype == buffers["novice_logits"].dtype == torch.float32
    finally:
        trainer.close()


@pytest.mark.parametrize("p", [0.8, 0.05])
def test_expert_prob_init_sets_how_often_an_untrained_coordinator_asks(agents, tmp_path, p):
    config = load_config(
        CONFIGS / "procgen_ppo.yaml",
        [
            *agent_overrides(agents),
            *TINY,
            *TINY_PPO,
            f"experiments_dir={tmp_path}",
            f"env.task={GAME}",
            "policy.model.feature_type=hidden_dist",
            f"policy.model.expert_prob_init={p}",
        ],
    )
    trainer = Trainer(config, show_progress=False)
    try:
        env, policy = trainer.parts.env, trainer.parts.policy
        obs, _ = env.reset(seed=1)
        with torch.no_grad():
            logits = policy.model({k: torch.as_tensor(v) for k, v in obs.items()}).logits
        asked = torch.softmax(logits, dim=-1)[:, EXPERT]
        # The head's weights start at gain 0.01, so the features move the probability only a little.
        assert asked.numpy() == pytest.approx(np.full(env.num_envs, p), abs=0.02)
    finally:
        trainer.close()


@pytest.mark.parametrize("value", [0, 1, 1.5])
def test_expert_prob_init_must_be_a_probability_strictly_inside_0_and_1(value):
    with pytest.raises(ConfigError, match="expert_prob_init=.* must be a probability in \\(0, 1\\)"):
        load_config(
            CONFIGS / "procgen_ppo.yaml",
            ["policy.model.feature_type=hidden_dist", f"policy.model.expert_prob_init={value}"],
        )


CALIBRATION = ["algorithm.num_episodes=2", "algorithm.num_envs=2", "algorithm.rollout_episodes=2", "env.num_envs=2"]


def calibrated(agents, tmp_path, name: str, *overrides: str) -> dict:
    overrides = [*agent_overrides(agents), *CALIBRATION, *overrides]
    ckpt = train(tmp_path, name, overrides, config_path=CONFIGS / f"procgen_{name}.yaml")
    return load_checkpoint(ckpt)


def assert_picked_the_best(payload: dict, param: str, log: str) -> None:
    record = payload["calibration"]
    assert record["param"] == param and record["split"] == "val_true"  # coordination.selection_split
    assert len(record["candidates"]) == len(record["reward_mean"]) == 3
    best = record["candidates"][int(np.argmax(record["reward_mean"]))]
    assert record["chosen"] == best
    assert payload["model_state_dict"][param].item() == best and payload["policy_config"][param] == best
    for value, reward in zip(record["candidates"], record["reward_mean"], strict=True):
        assert f"candidate {value:.4g} | validation reward {reward:.3f}" in log


def test_random_calibration_picks_the_best_probability(agents, tmp_path):
    payload = calibrated(agents, tmp_path, "random", "policy.candidates=[0.0,0.5,1.0]")
    assert_picked_the_best(payload, "prob", (tmp_path / "random" / "train.log").read_text())
    # The validation numbers are real rollouts: p=0 never asks, p=1 always does.
    assert payload["calibration"]["expert_fraction"][0] == 0.0
    assert payload["calibration"]["expert_fraction"][-1] == 1.0


def test_logit_calibration_picks_the_best_threshold(agents, tmp_path):
    # Greedy agents make each validation rollout reproducible, so the record can be re-checked.
    payload = calibrated(agents, tmp_path, "logit", "policy.percentiles=[0,50,100]", "coordination.agent_temperature=0")
    assert_picked_the_best(payload, "threshold", (tmp_path / "logit" / "train.log").read_text())
    record = payload["calibration"]
    assert record["candidates"] == sorted(record["candidates"])  # percentiles 0, 50, 100 of the scores

    config = load_config(base=payload["config"])
    assert direct_calibration(config, record) == pytest.approx(record["reward_mean"])


def direct_calibration(config, record) -> list[float]:
    """Each candidate's mean validation reward, evaluated afresh as calibration does."""
    env = make_run_env(config, record["split"], num_envs=2)
    try:
        policy = LogitPolicy(config.policy, env)
        rewards = []
        for value in record["candidates"]:
            policy.set_params({"threshold": torch.tensor(value, dtype=torch.float64)})
            result = evaluate(policy, env, 2, seed=config.seed + CALIBRATION_SEED_OFFSET, split=record["split"])
            rewards.append(float(np.mean(result.returns)))
        return rewards
    finally:
        env.close()


def test_recalibrating_by_repricing_matches_calibrating_at_that_weight(agents, tmp_path):
    """The stored validation episodes, re-priced at another weight, are what calibrating there would see."""
    payload = calibrated(agents, tmp_path, "logit", "policy.percentiles=[0,50,100]", "coordination.agent_temperature=0")
    record, base_penalty = payload["calibration"], payload["config"]["coordination"]["base_penalty"]
    for weight in (0.0, 1.0, 2.0):
        config = load_config(base=payload["config"], overrides=[f"coordination.expert_query_cost_weight={weight}"])
        direct = direct_calibration(config, record)
        repriced = [
            np.mean(np.asarray(ep["base_reward"]) - weight * np.asarray(ep["expert_steps"]) * base_penalty)
            for ep in record["episodes"]
        ]
        assert repriced == pytest.approx(direct), weight
        assert reselect(record, weight, base_penalty, 0.0) == record["candidates"][int(np.argmax(direct))]


@pytest.mark.parametrize(
    "override",
    [
        "coordination.expert_query_cost_weight=-0.1",
        "coordination.agent_temperature=-1",
        "coordination.base_penalty_episodes=0",
        "policy.score=confidence",
    ],
)
def test_bad_coordination_settings_are_config_errors(override):
    name = override.split("=")[0]
    with pytest.raises(ConfigError, match=name.split(".")[-1]):
        load_config(CONFIGS / "procgen_logit.yaml", [override])


def test_logit_scores_on_hand_computed_logits():
    logits = torch.tensor([[2.0, 1.0, 0.0]])
    z = math.e**2 + math.e + 1
    p = [math.e**2 / z, math.e / z, 1 / z]
    expected = {
        "max_logit": 2.0,
        "max_prob": p[0],
        "margin": p[0] - p[1],
        "neg_entropy": sum(q * math.log(q) for q in p),
        "energy": math.log(z),
    }
    for name, value in expected.items():
        assert SCORES[name](logits).item() == pytest.approx(value, rel=1e-6), name
    # A flat distribution is the least confident under every probability-based score.
    flat = torch.zeros(1, 3)
    for name in ("max_prob", "margin", "neg_entropy"):
        assert SCORES[name](flat).item() < SCORES[name](logits).item()


def test_trapezoid_auc_on_hand_computed_curves():
    assert trapezoid_auc(COST_WEIGHTS, [10, 8, 6, 4, 2, 0]) == pytest.approx(5.0)  # 0.2 x (5 + 8 + 6 + 4 + 2 + 0)
    assert trapezoid_auc(COST_WEIGHTS, [3] * 6) == pytest.approx(3.0)
    assert trapezoid_auc([0, 1, 3], [0, 2, 2]) == pytest.approx(5.0)  # 1 + 4
    with pytest.raises(ValueError):
        trapezoid_auc([0, 0.5, 0.4], [1, 2, 3])


def test_cost_sweep_recharges_the_same_episodes():
    # Two episodes: base rewards 10 and 4, 10 and 0 expert steps, 2 and 0 switches.
    result = EvalResult(
        "test", 1.0, [0.0, 0.0], [20, 30], {"base_reward": [10, 4], "expert_steps": [10, 0], "switches": [2, 0]}
    )
    sweep = cost_sweep(result, base_penalty=0.5, switch_agent_cost_weight=0.1)
    # Episode 1 at weight w: 10 - (10 w + 0.1 x 2) x 0.5 = 9.9 - 5w; episode 2: 4. Mean 6.95 - 2.5w.
    for row in sweep["cost_sweep"]:
        assert row["reward_mean"] == pytest.approx(6.95 - 2.5 * row["cost_weight"])
        assert row["reward_std"] == pytest.approx(np.std([9.9 - 5 * row["cost_weight"], 4], ddof=1))
    assert [row["cost_weight"] for row in sweep["cost_sweep"]] == list(COST_WEIGHTS)
    assert sweep["auc"] == pytest.approx(6.95 - 1.25)


def test_a_ppo_coordinator_resumes_bit_identically(agents, tmp_path):
    """Stopped after 4 of 8 iterations (128 steps per env: episodes have ended) and resumed, a
    coordinator ends with the weights of one never stopped: the checkpoint carries the coordination
    env (games, episode totals, the agents' pending actions and the keys of their sampling noise)."""
    from tests.conftest import cli

    run = [
        *agent_overrides(agents),
        *TINY,
        *TINY_PPO,
        f"env.task={GAME}",
        f"experiments_dir={tmp_path}",
        "policy.model.feature_type=hidden_dist",
        "--no-progress",
    ]
    whole = cli("train", "-c", CONFIGS / "procgen_ppo.yaml", *run, "name=whole", "algorithm.total_timesteps=1024")
    assert whole.exit_code == 0, whole.output
    half = cli("train", "-c", CONFIGS / "procgen_ppo.yaml", *run, "name=half", "algorithm.total_timesteps=512")
    assert half.exit_code == 0, half.output
    resumed = cli("train", "--resume", tmp_path / "half", "algorithm.total_timesteps=1024", "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    a, b = (load_checkpoint(tmp_path / name / "last.ckpt") for name in ("whole", "half"))
    assert a["global_step"] == b["global_step"] == 1024
    assert b["env_state"]["episode_index"] == a["env_state"]["episode_index"] and any(b["env_state"]["episode_index"])
    assert all(torch.equal(a["model_state_dict"][k], b["model_state_dict"][k]) for k in a["model_state_dict"])


def test_normalize_features_must_be_true_or_false():
    with pytest.raises(ConfigError, match="normalize_features='maybe' is not allowed; it must be true or false"):
        overrides = ["policy.model.feature_type=hidden_dist", "policy.model.normalize_features=maybe"]
        load_config(CONFIGS / "procgen_ppo.yaml", overrides)


def test_normalize_features_without_novice_features_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="normalize_features=true standardises the novice's features"):
        load_config(
            CONFIGS / "procgen_ppo.yaml", ["policy.model.feature_type=obs", "policy.model.normalize_features=true"]
        )


def test_feature_standardizer_fits_on_its_first_training_batch_only_and_travels_in_its_state():
    from duo_ai.models.impala import FeatureStandardizer

    torch.manual_seed(0)
    first = torch.randn(512, 3) * torch.tensor([0.02, 5.0, 0.0]) + torch.tensor([0.06, -1.0, 0.3])
    scaler = FeatureStandardizer(3)
    scaler.eval()
    assert torch.equal(scaler(first), first), "before any training batch the features pass unchanged"
    scaler.train()
    out = scaler(first)
    assert out[:, :2].mean(0).abs().max() < 1e-5
    assert out[:, :2].std(0, unbiased=False) == pytest.approx([1.0, 1.0], abs=1e-4)
    assert out[:, 2].abs().max() < 1e-3, "a constant dimension maps to 0 (up to its mean's rounding), not to 0 / 0"
    # Later batches, in training or not, use the first batch's statistics.
    second = torch.randn(64, 3) + 10
    expected = (second - first.mean(0)) / first.var(0, unbiased=False).add(1e-8).sqrt()
    assert torch.allclose(scaler(second), expected, atol=1e-5)
    scaler.eval()
    assert torch.allclose(scaler(second), expected, atol=1e-5)
    fresh = FeatureStandardizer(3)
    fresh.load_state_dict(scaler.state_dict())
    fresh.train()  # a loaded, fitted standardizer does not refit on its next training batch
    assert torch.allclose(fresh(second), expected, atol=1e-5)


def test_normalize_features_is_fitted_in_training_and_saved_in_the_checkpoint(agents, tmp_path):
    overrides = [
        *agent_overrides(agents),
        *TINY_PPO,
        "policy.model.feature_type=hidden_dist",
        "policy.model.normalize_features=true",
        "env.num_envs=2",
        "algorithm.num_steps=16",
        "algorithm.total_timesteps=32",
    ]
    ckpt = train(tmp_path, "standardized", overrides, config_path=CONFIGS / "procgen_ppo.yaml")
    state = load_checkpoint(ckpt)["model_state_dict"]
    for part, width in (("hidden", 256), ("dist", 15)):
        assert state[f"standardizers.{part}.fitted"].item() == 1
        assert state[f"standardizers.{part}.std"].shape == (width,)
        assert (state[f"standardizers.{part}.std"] > 0).all()
    # The novice's hidden features are ReLU outputs: their fitted means are >= 0 and not all 0.
    assert (state["standardizers.hidden.mean"] >= 0).all() and state["standardizers.hidden.mean"].sum() > 0
    # Without the option the model has no standardizer (older checkpoints keep loading).
    without = [o for o in overrides if not o.startswith("policy.model.normalize_features")]
    plain = train(tmp_path, "plain", without, config_path=CONFIGS / "procgen_ppo.yaml")
    assert not any(k.startswith("standardizers.") for k in load_checkpoint(plain)["model_state_dict"])
    metrics = evaluate_checkpoint(str(ckpt), split="test", num_episodes=1)
    assert metrics["num_episodes"] == 1


def test_ppo_logs_the_base_reward_and_expert_fraction_of_coordination_episodes():
    from duo_ai.algorithms.ppo import PPO, EpisodeTracker

    ppo = PPO.__new__(PPO)  # only the episode bookkeeping is exercised
    ppo.distributed, ppo.episodes = False, EpisodeTracker()
    assert ppo.episode_means() == {}
    done = np.array([True, False, True])
    ppo.episodes.add(
        {
            "_episode": done,
            "episode": {
                "r": np.array([4.0, 0, 1.0]),
                "l": np.array([10, 0, 30]),
                "base_reward": np.array([10.0, 0, 0.0]),
                "expert_steps": np.array([6, 0, 2]),
            },
        }
    )
    assert ppo.episode_means() == {
        "charts/episode_return": 2.5,
        "charts/episode_length": 20.0,
        "charts/episode_base_reward": 5.0,
        "charts/episode_expert_fraction": 8 / 40,  # expert steps over all steps, not a mean of ratios
    }
    plain = PPO.__new__(PPO)
    plain.distributed, plain.episodes = False, EpisodeTracker()
    plain.episodes.add({"_episode": np.array([True]), "episode": {"r": np.array([3.0]), "l": np.array([7])}})
    assert plain.episode_means() == {"charts/episode_return": 3.0, "charts/episode_length": 7.0}
