"""MiniGrid environments, models and configs: real MiniGrid envs, real (tiny) training runs."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from duo_ai.config import load_config
from duo_ai.core.checkpoint import load_checkpoint
from duo_ai.core.errors import EnvError
from duo_ai.envs import MiniGridVecEnv, make_env
from duo_ai.models import build_model, model_config_from
from duo_ai.models.minigrid import GridEncoder
from tests.conftest import TINY, assert_user_error, cli

DS2 = "MiniGrid-DistShift2-v0"
RANDOM_START = {"agent_start_pos": None}
TINY_MG = ["-c", "minigrid_agent", *(o for o in TINY if not o.startswith("env.task="))]


def play(env: MiniGridVecEnv, steps: int, seed: int = 0) -> tuple[list[int], np.ndarray]:
    """Level seeds of the episodes that ended, and the last observation, under fixed actions."""
    env.reset(seed=seed)
    levels, obs = [], None
    rng = np.random.default_rng(0)
    for _ in range(steps):
        obs, _, term, trunc, info = env.step(rng.integers(0, 3, env.num_envs))
        if "_episode" in info:
            levels += info["episode"]["level_seed"][info["_episode"]].tolist()
    return levels, obs


def test_level_seeds_are_deterministic_and_splits_disjoint() -> None:
    config = load_config(["configs/minigrid_agent.yaml"])
    seen = {}
    for split in ("train", "val_true", "test"):
        env = make_env(config.env, split, num_envs=4, seed=3)
        _, info = env.reset(seed=3)
        first = info["level_seed"].copy()
        levels, obs = play(env, 300, seed=3)
        again, obs_again = play(env, 300, seed=3)
        assert levels == again and np.array_equal(obs, obs_again)  # a pure function of the seed
        assert len(levels) > 4
        seen[split] = set(levels) | set(first.tolist())
        env.close()
    assert all(0 <= s < 50_000 for s in seen["train"])
    assert all(50_000 <= s < 60_000 for s in seen["val_true"])
    assert all(s >= 100_000 for s in seen["test"])
    other = make_env(config.env, "train", num_envs=4, seed=4)
    _, info = other.reset(seed=4)
    assert not np.array_equal(info["level_seed"], first)  # another seed, other levels


def test_observation_is_the_agents_view_and_start_follows_the_level_seed() -> None:
    env = MiniGridVecEnv(DS2, 3, start_level=10, num_levels=1, kwargs=RANDOM_START)
    obs, info = env.reset(seed=0)
    assert obs.shape == (3, 3, 7, 7) and obs.dtype == np.uint8
    assert (info["level_seed"] == 10).all()
    cells = env.agent_cells()
    assert (cells == cells[0]).all()  # one level seed, one start
    reference = gym.make(DS2, **RANDOM_START).unwrapped
    view, _ = reference.reset(seed=10)
    assert np.array_equal(obs[0], view["image"].transpose(2, 0, 1))
    assert tuple(reference.agent_pos) == tuple(cells[0])


def test_autoreset_reports_the_episode_and_truncation_is_not_termination() -> None:
    env = MiniGridVecEnv(DS2, 2, kwargs=RANDOM_START)
    env.reset(seed=1)
    limit = env.envs[0].max_steps
    returns, ended_at, final = [], None, None
    for t in range(limit + 5):
        # Turning in place never ends an episode by itself: only MiniGrid's step limit does.
        obs, reward, term, trunc, info = env.step(np.zeros(2, dtype=np.int64))
        assert not term.any()
        if trunc.any():
            ended_at, final = t + 1, info["final_obs"][0]
            assert info["_episode"].all() and (info["episode"]["l"] == limit).all()
            returns = info["episode"]["r"].tolist()
            assert env._lengths.tolist() == [0, 0]  # the next episode has started
            break
    assert ended_at == limit and returns == [0.0, 0.0]
    assert final.shape == (3, 7, 7)


def test_exact_resume_replays_the_current_episodes() -> None:
    env = MiniGridVecEnv(DS2, 3, kwargs=RANDOM_START)
    env.reset(seed=5)
    rng = np.random.default_rng(1)
    for _ in range(40):
        env.step(rng.integers(0, 3, 3))
    state = env.get_state()
    torch.save(state, "/dev/null")  # plain lists and numbers
    later = [env.step(a) for a in rng.integers(0, 3, (30, 3))]
    restored = MiniGridVecEnv(DS2, 3, kwargs=RANDOM_START)
    restored.set_state(state)
    rng = np.random.default_rng(1)
    rng.integers(0, 3, (40, 3))
    for (obs, reward, term, trunc, info), actions in zip(later, rng.integers(0, 3, (30, 3)), strict=True):
        obs2, reward2, term2, trunc2, info2 = restored.step(actions)
        assert np.array_equal(obs, obs2) and np.array_equal(reward, reward2)
        assert np.array_equal(term, term2) and np.array_equal(trunc, trunc2)
        assert np.array_equal(info["level_seed"], info2["level_seed"])


def test_models_shapes_and_scaling() -> None:
    env = MiniGridVecEnv(DS2, 2)
    obs, _ = env.reset(seed=0)
    model = build_model(model_config_from("minigrid_ppo"), env.single_observation_space, env.single_action_space)
    out = model(torch.as_tensor(obs))
    assert out.logits.shape == (2, 7) and out.value.shape == (2,) and out.hidden.shape == (2, 128)
    encoder = GridEncoder((3, 7, 7), [4], 8)
    top = torch.tensor([10, 5, 2], dtype=torch.uint8).view(1, 3, 1, 1).expand(1, 3, 7, 7)
    assert torch.allclose(encoder.convs[0](top.float() / encoder.scale), encoder.convs[0](torch.ones(1, 3, 7, 7)))


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (["env.task=MiniGrid-DistShift3-v0"], ["unknown MiniGrid id", "MiniGrid-DistShift2-v0"]),
        (["env.distribution_mode=hard"], ["env.distribution_mode='hard' is a procgen setting", "minigrid"]),
        (["env.num_threads=2"], ["env.num_threads=2 is a procgen setting"]),
        (["env.splits.val_true.distribution_mode=hard"], ["env.splits.val_true.distribution_mode"]),
        (["env.name=procgen", "env.task=coinrun"], ["env.kwargs=", "is a minigrid setting"]),
        (["env.name=procgen"], ["env.kwargs="]),
        (["env.task=coinrun"], ["unknown MiniGrid id 'coinrun'"]),
        (["env.kwargs={no_such_arg: 1}"], ["env.kwargs do not fit", "no_such_arg"]),
    ],
)
def test_bad_minigrid_settings_are_refused_before_work(tmp_path, overrides, fragments) -> None:
    result = cli("train", *TINY_MG, f"experiments_dir={tmp_path}", "name=bad", *overrides)
    assert_user_error(result, *fragments)
    assert not (tmp_path / "bad").exists()


def test_a_minigrid_id_on_procgen_is_refused(tmp_path) -> None:
    result = cli("train", f"experiments_dir={tmp_path}", "name=bad", "env.task=MiniGrid-DistShift2-v0")
    assert_user_error(result, "unknown Procgen game 'MiniGrid-DistShift2-v0'")
    assert not (tmp_path / "bad").exists()


def test_train_eval_and_resume_on_minigrid(tmp_path) -> None:
    result = cli("train", *TINY_MG, f"experiments_dir={tmp_path}", "name=mg", "--no-progress")
    assert result.exit_code == 0, result.output
    payload = load_checkpoint(tmp_path / "mg" / "last.ckpt")
    assert payload["config"]["env"]["name"] == "minigrid" and payload["env_state"]["actions"]
    out = tmp_path / "eval.json"
    result = cli("eval", "--checkpoint", tmp_path / "mg", "-n", "6", "--temperature", "0", "--json", out)
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert metrics["num_episodes"] == 6 and all(s >= 100_000 for s in metrics["episode_level_seeds"])
    again = tmp_path / "again.json"
    cli("eval", "--checkpoint", tmp_path / "mg", "-n", "6", "--temperature", "0", "--json", again)
    assert json.loads(again.read_text())["episode_returns"] == metrics["episode_returns"]
    result = cli("train", "--resume", tmp_path / "mg", "algorithm.total_timesteps=512", "--no-progress")
    assert result.exit_code == 0, result.output
    assert load_checkpoint(tmp_path / "mg" / "last.ckpt")["global_step"] == 512


def test_unknown_minigrid_id_in_env_constructor() -> None:
    with pytest.raises(EnvError, match="did you mean"):
        MiniGridVecEnv("MiniGrid-DoorKey-8x9-v0", 1)
    with pytest.raises(EnvError, match="unknown MiniGrid id 'MiniGrid-Nope-v0'"):
        load_config(["configs/minigrid_agent.yaml"], ["env.task=MiniGrid-Nope-v0"])


@pytest.mark.slow(seconds=120)
def test_the_minigrid_smoke_study_runs_every_method_and_seed_and_draws_its_coordinator(
    tmp_path, minigrid_smoke_study
) -> None:
    smoke_study = minigrid_smoke_study
    table = json.loads((smoke_study / "table.json").read_text())
    assert set(table["methods"]) == {"always_novice", "always_expert", "random", "ood", "ppo", "ppo_s2"}
    assert table["env"] == DS2 and table["num_episodes"] == 4
    for name in ("ppo", "ppo_s2"):
        assert set(table["methods"][name]["diff_vs_baselines"]) == {"always_novice", "always_expert", "random", "ood"}
    auc = json.loads((smoke_study / "report" / "table.json").read_text())
    assert auc["methods"]["ppo_s2"]["auc_diff_vs_best_baseline"]["against"] == auc["best_baseline_auc"]
    novice = load_checkpoint(smoke_study / "novice" / "last.ckpt")
    assert novice["config"]["env"]["task"] == "MiniGrid-DistShift1-v0"  # the novice's own layout
    ood = load_checkpoint(smoke_study / "ood" / "last.ckpt")
    assert ood["config"]["env"]["task"] == DS2 and ood["config"]["policy"]["name"] == "ood"
    # The second seed is its own run, trained with its own seed; the sanity-only weight 2 has one seed.
    assert load_checkpoint(smoke_study / "ppo_w1_s2" / "last.ckpt")["config"]["seed"] == 2
    assert (smoke_study / "ppo_w2").is_dir() and not (smoke_study / "ppo_w2_s2").exists()
    for method in ("ppo", "ppo_s2"):  # where each seed's coordinator asks, at the study's weight
        picture = smoke_study / "ask_map" / f"{method}_w1.png"
        assert picture.stat().st_size > 1000 and json.loads(picture.with_suffix(".json").read_text())["episodes"] == 4
    ask_map_and_video_of(smoke_study / "ppo_w1" / "last.ckpt", tmp_path)


def ask_map_and_video_of(ckpt: Path, tmp_path: Path) -> None:
    """`duo-ai ask-map` and `duo-ai video` of a MiniGrid coordinator: the map's counts, its seed, a strip."""
    out = tmp_path / "map.png"
    result = cli("ask-map", "--checkpoint", ckpt, "-o", out, "-n", "6", "num_threads=1")
    assert result.exit_code == 0, result.output
    numbers = json.loads(out.with_suffix(".json").read_text())
    visits, asks, failures = (np.array(numbers[k]) for k in ("visits", "asks", "novice_failures"))
    assert visits.shape == (7, 9) and (asks <= visits).all() and visits.sum() > 0  # DistShift: 9 x 7 cells
    assert numbers["ask_fraction"] == pytest.approx(asks.sum() / visits.sum())
    assert failures.sum() <= 6 and out.stat().st_size > 1000
    again = tmp_path / "again.png"
    cli("ask-map", "--checkpoint", ckpt, "-o", again, "-n", "6", "num_threads=1")
    assert json.loads(again.with_suffix(".json").read_text())["asks"] == numbers["asks"]  # same seed, same map
    strip = tmp_path / "strip.png"
    result = cli("video", "--checkpoint", ckpt, "-o", strip, "--frames", "3", "num_threads=1")
    assert result.exit_code == 0, result.output
    assert "MiniGrid-DistShift2-v0" in result.stdout and strip.stat().st_size > 1000


def test_ask_map_refuses_what_it_cannot_draw(tmp_path) -> None:
    result = cli("train", *TINY_MG, f"experiments_dir={tmp_path}", "name=agent", "--no-progress")
    assert result.exit_code == 0, result.output
    assert_user_error(
        cli("ask-map", "--checkpoint", tmp_path / "agent" / "last.ckpt", "-o", tmp_path / "m.png"),
        "ask-map draws a MiniGrid coordinator", "an agent on minigrid",
    )  # fmt: skip
    assert_user_error(
        cli("ask-map", "--checkpoint", tmp_path / "agent" / "last.ckpt", "-o", tmp_path / "m.gif"), "unknown file type"
    )
    assert not (tmp_path / "m.png").exists()


def test_agents_of_two_suites_are_refused_in_one_coordination_run(tmp_path, tiny_run) -> None:
    result = cli("train", *TINY_MG, f"experiments_dir={tmp_path}", "name=grid_agent", "--no-progress")
    assert result.exit_code == 0, result.output
    grid_agent = tmp_path / "grid_agent" / "last.ckpt"
    mixed = ["-c", "configs/minigrid_random.yaml", f"experiments_dir={tmp_path}", "name=mixed"]
    assert_user_error(
        cli("train", *mixed, f"train_novice={grid_agent}", f"train_expert={tiny_run / 'last.ckpt'}"),
        "train_novice was trained on minigrid but train_expert on procgen/starpilot", "the same game",
    )  # fmt: skip
    assert_user_error(
        cli("train", *mixed, f"train_novice={tiny_run / 'last.ckpt'}", f"train_expert={tiny_run / 'last.ckpt'}"),
        "the agents were trained on procgen/starpilot but the coordination env is minigrid",
    )
    assert not (tmp_path / "mixed").exists()


def test_a_coordinator_bootstraps_from_its_own_view_where_a_time_limit_cuts_an_episode(tmp_path) -> None:
    """A PPO coordinator whose episodes are cut by MiniGrid's step limit: the final observation PPO
    bootstraps from is the coordinator's (frame and novice features), not the bare frame."""
    result = cli("train", *TINY_MG, f"experiments_dir={tmp_path}", "name=agent", "--no-progress")
    assert result.exit_code == 0, result.output
    agent = tmp_path / "agent" / "last.ckpt"
    short = ["env.kwargs={agent_start_pos: null, max_steps: 3}", "coordination.base_penalty=0.1"]
    result = cli(
        "train", "-c", "minigrid_ppo", f"train_novice={agent}", f"train_expert={agent}", *short,
        "env.num_envs=2", "algorithm.num_steps=8", "algorithm.num_minibatches=1", "algorithm.update_epochs=1",
        "algorithm.total_timesteps=16", "evaluation.num_episodes=0", "num_threads=1",
        f"experiments_dir={tmp_path}", "name=coordinator", "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    from duo_ai.build import compute_from, env_maker

    config = load_config("minigrid_ppo", [f"train_novice={agent}", f"train_expert={agent}", *short])
    env = env_maker(config, compute_from(config), log=lambda m: None)("train", 2)
    try:
        env.reset(seed=0)
        for _ in range(3):
            _, _, terminated, truncated, info = env.step(np.zeros(2, dtype=np.int64))
        assert truncated.all() and not terminated.any()
        final = info["final_obs"][0]
        assert set(final) == {"base_obs", "novice_hidden", "novice_logits"} and final["base_obs"].shape == (3, 7, 7)
    finally:
        env.close()
