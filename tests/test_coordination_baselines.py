"""The every_k and ood baseline coordinators: decisions, calibration, checkpoints, re-pricing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from duo_ai.build import compute_from, config_from_checkpoint, env_maker
from duo_ai.config import load_config
from duo_ai.coordination.baselines import EveryKPolicy, OODPolicy, novice_fingerprint, reselect
from duo_ai.coordination.baselines.detectors import detector_class
from duo_ai.core.checkpoint import load_checkpoint, save_checkpoint
from duo_ai.core.errors import CheckpointError, ConfigError
from duo_ai.eval_job import evaluate_checkpoint
from duo_ai.evaluation import evaluate
from tests.conftest import assert_user_error, cli
from tests.coord_fixtures import CONFIGS, GAME, agent_checkpoints, coordination_config, make_run_env
from tests.test_coordination_train import CALIBRATION, assert_picked_the_best, calibrated

# A tiny ood fit: a few hundred novice states at most, few neighbours.
OOD = ["policy.fit_episodes=2", "policy.max_fit_states=60", "policy.n_neighbors=3", "policy.percentiles=[0,50,100]"]


@pytest.fixture(scope="module")
def agents(tmp_path_factory):
    return agent_checkpoints(tmp_path_factory)


@pytest.fixture(scope="module")
def every_k_run(agents, tmp_path_factory):
    """Run folder of an every_k coordinator calibrated over k = 1, 2 and 1000."""
    root = tmp_path_factory.mktemp("every_k")
    calibrated(agents, root, "every_k", "policy.candidates=[1,2,1000]")
    return root / "every_k"


@pytest.fixture(scope="module")
def ood_run(agents, tmp_path_factory):
    """Run folder of an ood coordinator calibrated with greedy agents (reproducible rollouts)."""
    root = tmp_path_factory.mktemp("ood")
    calibrated(agents, root, "ood", *OOD, "coordination.agent_temperature=0")
    return root / "ood"


def test_every_k_asks_at_steps_0_k_2k_of_each_episode_and_restarts_at_resets(agents, tmp_path):
    env = make_run_env(coordination_config(agents, tmp_path, "policy.name=every_k", "policy.k=3"), num_envs=2)
    try:
        policy = EveryKPolicy(load_config(overrides=["policy.name=every_k", "policy.k=3"]).policy, env)
        obs = {"novice_logits": np.zeros((2, 15), dtype=np.float32)}
        policy.reset(np.array([True, True]))
        asked = []
        for done in ([0, 0], [0, 0], [0, 1], [0, 0], [1, 0], [0, 0]):
            asked.append(policy.act(obs).tolist())
            policy.reset(np.array(done, dtype=bool))
        # env 0: steps 0-5 of one episode, then a new one; env 1: steps 0-2, then 0-2 of the next.
        assert asked == [[1, 1], [0, 0], [0, 0], [1, 1], [0, 0], [1, 0]]

        # On real episodes: the expert acts at steps 0, 3, 6, ... of each, ceil(length / 3) times.
        result = evaluate(policy, env, 4, seed=5)
        assert result.extra["expert_steps"] == [math.ceil(n / 3) for n in result.lengths]
        policy.set_params({"k": torch.tensor(1.0, dtype=torch.float64)})
        assert policy.config.k == 1 and isinstance(policy.config.k, int)
        result = evaluate(policy, env, 2, seed=5)
        assert result.extra["expert_steps"] == result.lengths  # k = 1 is always-expert
    finally:
        env.close()


def test_every_k_calibration_picks_the_best_k(every_k_run):
    payload = load_checkpoint(every_k_run / "last.ckpt")
    assert_picked_the_best(payload, "k", (every_k_run / "train.log").read_text())
    record = payload["calibration"]
    assert record["candidates"] == [1.0, 2.0, 1000.0]
    assert record["expert_fraction"][0] == 1.0  # k = 1 asks at every step
    # k = 1000 asks once per episode (they are shorter here): one expert step in each.
    assert [int(n) for n in record["episodes"][2]["expert_steps"]] == [1, 1]
    assert payload["model_state_dict"]["k"].dtype == torch.float64 and payload["policy_config"]["k"] == record["chosen"]


@pytest.mark.parametrize("weight", [0.0, 0.5, 1e6])
def test_every_k_is_repriced_at_another_cost_weight(every_k_run, weight):
    payload = load_checkpoint(every_k_run / "last.ckpt")
    record, base_penalty = payload["calibration"], payload["config"]["coordination"]["base_penalty"]
    overrides = [f"coordination.expert_query_cost_weight={weight}"]
    metrics = evaluate_checkpoint(every_k_run / "last.ckpt", num_episodes=2, overrides=overrides)
    expected = reselect(record, weight, base_penalty, 0.0)
    assert metrics["calibrated"] == {"param": "k", "value": expected, "cost_weight": weight}
    if weight == 1e6:
        assert expected == 1000.0  # at a prohibitive cost, the fewest expert steps win
        assert metrics["expert_steps_mean"] == 1.0


def test_ood_calibration_fits_on_the_novice_and_picks_the_best_threshold(agents, ood_run):
    payload = load_checkpoint(ood_run / "last.ckpt")  # torch.load(weights_only=True)
    assert_picked_the_best(payload, "threshold", (ood_run / "train.log").read_text())
    record, params = payload["calibration"], payload["model_state_dict"]
    assert record["candidates"] == sorted(record["candidates"])  # percentiles 0, 50, 100 of the scores
    states = params["fit_states"]
    assert states.dtype == torch.float32 and states.shape == (60, 256)  # subsampled to max_fit_states
    novice = load_checkpoint(agents["novice"])["model_state_dict"]
    config = config_from_checkpoint(payload)
    env = make_run_env(config, num_envs=2)
    try:
        assert torch.equal(params["fitted_on"], novice_fingerprint(env.novice))
        assert torch.equal(novice_fingerprint(env.novice), OODPolicy(config.policy, env).novice_sha256)
        assert all(torch.equal(novice[k], v) for k, v in env.novice.get_params().items())
    finally:
        env.close()


def test_ood_fits_on_the_novices_own_levels_not_the_coordination_levels(agents, tmp_path):
    """Two coordination runs on other levels than the novice's fit the same states: its own."""
    fits = []
    for start in (0, 5000):
        config = coordination_config(agents, tmp_path, "policy.name=ood", *OOD, f"env.start_level={start}")
        env = make_run_env(config, num_envs=2)
        try:
            policy = OODPolicy(config.policy, env)
            steps = policy.fit(env, seed=3)
            fits.append(policy.get_params()["fit_states"])
        finally:
            env.close()
        assert steps > 0
    assert torch.equal(fits[0], fits[1])


# Any pyod detector, by its module (iforest, ecod) or its class (DeepSVDD: a network, refitted from its seed).
@pytest.mark.parametrize("detector", ["iforest", "ecod", "DeepSVDD"])
def test_ood_asks_above_the_threshold_and_reloads_with_weights_only_to_the_same_decisions(agents, tmp_path, detector):
    ood = ["policy.name=ood", *OOD, f"policy.detector={detector}"]
    config = coordination_config(agents, tmp_path, *ood)
    env = make_run_env(config, num_envs=2)
    try:
        policy = OODPolicy(config.policy, env)
        policy.fit(env, seed=3)
        obs, _ = env.reset(seed=11)
        batches = []
        for _ in range(20):  # states of the coordination env, the novice acting
            batches.append(obs)
            obs, *_ = env.step(np.zeros(2, dtype=np.int64))
        scores = np.concatenate([policy.scores(b) for b in batches])
        threshold = float(np.median(scores))
        policy.set_params({"threshold": torch.tensor(threshold, dtype=torch.float64)})
        decisions = np.concatenate([policy.act(b).numpy() for b in batches])
        assert (decisions == (scores > threshold)).all() and 0 < decisions.sum() < len(decisions)

        path = tmp_path / "ood.ckpt"
        save_checkpoint(path, {"model_state_dict": policy.get_params()})
        params = torch.load(path, map_location="cpu", weights_only=True)["model_state_dict"]
        reloaded = OODPolicy(load_config(overrides=ood).policy, env)
        reloaded.set_params(params)
        assert reloaded.config.threshold == threshold
        assert np.array_equal(np.concatenate([reloaded.scores(b) for b in batches]), scores)
        assert np.array_equal(np.concatenate([reloaded.act(b).numpy() for b in batches]), decisions)
    finally:
        env.close()


def test_a_detector_is_pyods_class_of_that_name_and_one_pyod_cannot_give_is_refused_in_one_line():
    from pyod.models.deep_svdd import DeepSVDD
    from pyod.models.iforest import IForest
    from pyod.models.knn import KNN
    from pyod.models.lof import LOF

    # The names configs and checkpoints have always used name the same classes.
    assert [detector_class(name) for name in ("knn", "lof", "iforest")] == [KNN, LOF, IForest]
    assert detector_class("deep_svdd") is detector_class("DeepSVDD") is detector_class("deepsvdd") is DeepSVDD
    for name, why in (("base", "has no detector"), ("embedding", "holds 2 detectors")):
        with pytest.raises(ConfigError) as refused:
            detector_class(name)
        message = str(refused.value)
        assert "\n" not in message and f"pyod.models.{name} {why}" in message and "knn" in message


def test_an_unknown_detector_is_refused_in_one_line_before_any_work(agents, tmp_path):
    result = cli(
        "train", "-c", CONFIGS / "procgen_ood.yaml", f"experiments_dir={tmp_path}", "name=bad", f"env.task={GAME}",
        f"train_novice={agents['novice']}", f"train_expert={agents['expert']}", "policy.detector=nosuch",
        "--no-progress",
    )  # fmt: skip
    assert_user_error(result, "policy.detector", "knn", "lof", "iforest")
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("key", ["train_novice", "test_novice"])
@pytest.mark.parametrize("embedded", [True, False])
def test_an_ood_coordinator_refuses_another_novice_in_one_line(agents, ood_run, tmp_path, key, embedded):
    """With or without the agents embedded in its checkpoint, the novice is the one the config names."""
    checkpoint = ood_run / "last.ckpt"
    if not embedded:
        checkpoint = tmp_path / "bare.ckpt"
        assert cli("export", ood_run, "-o", checkpoint, "--without-agents").exit_code == 0
    result = cli("eval", "--checkpoint", checkpoint, "-n", "1", "--split", "test", f"{key}={agents['expert']}")
    if key == "train_novice" and embedded:  # every coordinator refuses train agents it was not trained with
        assert_user_error(result, "is not the train_novice this coordinator was trained with")
    else:
        assert_user_error(result, "fitted on another novice", "calibrate a new one")
    assert cli("eval", "--checkpoint", checkpoint, "-n", "1", "--split", "test").exit_code == 0  # its own novice


def test_an_ood_run_whose_selection_split_has_another_novice_is_refused_in_one_line_before_any_work(agents, tmp_path):
    result = cli(
        "train", "-c", CONFIGS / "procgen_ood.yaml", f"experiments_dir={tmp_path}", "name=bad", f"env.task={GAME}",
        f"train_novice={agents['novice']}", f"train_expert={agents['expert']}", f"test_novice={agents['expert']}",
        "coordination.base_penalty=0.5", *CALIBRATION, *OOD, "--no-progress",
    )  # fmt: skip
    assert_user_error(result, "policy ood", "test_novice", "'val_true'")
    assert not (tmp_path / "bad").exists()


def test_an_ood_fit_is_refused_by_another_novice_when_its_state_is_loaded(agents, ood_run):
    payload = load_checkpoint(ood_run / "last.ckpt")
    config = config_from_checkpoint(payload, overrides=[f"train_novice={agents['expert']}"])
    env = env_maker(config, compute_from(config), log=lambda m: None)("train", 2)
    try:
        policy = OODPolicy(config.policy, env)
        with pytest.raises(CheckpointError, match="fitted on another novice"):
            policy.set_params(payload["model_state_dict"])
    finally:
        env.close()


@pytest.mark.parametrize("weight", [0.0, 1e6])
def test_ood_is_repriced_at_another_cost_weight(ood_run, weight):
    payload = load_checkpoint(ood_run / "last.ckpt")
    record, base_penalty = payload["calibration"], payload["config"]["coordination"]["base_penalty"]
    overrides = [f"coordination.expert_query_cost_weight={weight}"]
    metrics = evaluate_checkpoint(ood_run / "last.ckpt", num_episodes=2, overrides=overrides)
    expected = reselect(record, weight, base_penalty, 0.0)
    assert metrics["calibrated"] == {"param": "threshold", "value": expected, "cost_weight": weight}
    if weight == 1e6:  # at a prohibitive cost, the candidate with the fewest expert steps wins
        steps = [np.mean(ep["expert_steps"]) for ep in record["episodes"]]
        assert np.mean(record["episodes"][record["candidates"].index(expected)]["expert_steps"]) == min(steps)


def test_a_calibration_stopped_between_candidates_resumes_to_the_same_choice(every_k_run, tmp_path):
    """The value a calibration is trying sits in its checkpoint's config: --resume accepts it, and the
    resumed sweep ends as the uninterrupted one (the every_k fixture's) did."""
    from duo_ai.training import Trainer

    class StopAfterSecondIteration:
        def __init__(self) -> None:
            self.seen = 0

        def on_iteration(self, trainer, stats):
            self.seen += 1
            if self.seen == 2:  # the fit and one candidate done: an interrupt, as Ctrl-C would be
                raise KeyboardInterrupt

    how = [f"experiments_dir={tmp_path}", "name=stopped", "algorithm.save_freq=1", "evaluation.num_episodes=0"]
    config = load_config(every_k_run / "config.yaml", how)
    with (
        pytest.raises(KeyboardInterrupt),
        Trainer(config, show_progress=False, callbacks=[StopAfterSecondIteration()]) as t,
    ):
        t.run()
    assert "summary.json" not in {p.name for p in (tmp_path / "stopped").iterdir()}
    assert cli("train", "--resume", tmp_path / "stopped", "--no-progress").exit_code == 0
    whole, resumed = (load_checkpoint(run / "last.ckpt")["calibration"] for run in (every_k_run, tmp_path / "stopped"))
    assert resumed["reward_mean"] == whole["reward_mean"] and resumed["chosen"] == whole["chosen"]
