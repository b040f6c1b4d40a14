"""End to end through `duo-ai train` / `duo-ai eval`: coordinators over tiny real novice/expert checkpoints."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from duo_ai.coordination.sweep import COST_WEIGHTS
from duo_ai_cli.main import app
from tests.conftest import assert_user_error
from tests.coord_fixtures import CONFIGS, GAME, TINY, TINY_PPO, agent_checkpoints

runner = CliRunner()


def duo_ai(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """PPO coordinator (base_penalty measured) and always-novice/expert baselines, trained by `duo-ai train`."""
    agents = agent_checkpoints(tmp_path_factory)
    root = tmp_path_factory.mktemp("cli_runs")
    common = [
        f"experiments_dir={root}",
        f"env.task={GAME}",
        f"train_novice={agents['novice']}",
        f"train_expert={agents['expert']}",
        *TINY,
        "--no-progress",
    ]
    ppo = ["name=ppo", "policy.model.feature_type=hidden_dist", "algorithm.total_timesteps=128", *TINY_PPO]
    measured = ["coordination.base_penalty_episodes=2", "evaluation.num_envs=2"]
    result = duo_ai("train", "-c", CONFIGS / "procgen_ppo.yaml", *ppo, *measured, *common)
    assert result.exit_code == 0, result.output
    for agent in ("novice", "expert"):
        result = duo_ai(
            "train", "-c", CONFIGS / "procgen_always.yaml", f"name={agent}", f"policy.agent={agent}",
            "coordination.base_penalty=0.5", *common,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    return {"root": root, "agents": agents, **{name: root / name / "last.ckpt" for name in ("ppo", "novice", "expert")}}


def evaluate_json(ckpt, out, *args: str) -> dict:
    result = duo_ai("eval", "--checkpoint", ckpt, "--split", "test", "-n", "2", "--json", out, *args)
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())


def test_coordinator_eval_reports_coordination_metrics_and_cost_sweep(runs, tmp_path):
    stored = yaml.safe_load((runs["root"] / "ppo" / "config.yaml").read_text())
    base_penalty = stored["coordination"]["base_penalty"]
    assert isinstance(base_penalty, float)  # measured from the expert and recorded in the run

    m = evaluate_json(runs["ppo"], tmp_path / "ppo.json", "--cost-sweep")
    for key in ("reward_mean", "base_reward_mean", "base_reward_std", "expert_fraction", "episode_length_mean", "auc"):
        assert isinstance(m[key], float), key
    assert 0.0 <= m["expert_fraction"] <= 1.0
    assert m["expert_fraction"] == pytest.approx(m["expert_steps_mean"] / m["episode_length_mean"])
    assert [row["cost_weight"] for row in m["cost_sweep"]] == list(COST_WEIGHTS)
    means = [row["reward_mean"] for row in m["cost_sweep"]]
    assert m["auc"] == pytest.approx(0.2 * (means[0] / 2 + sum(means[1:5]) + means[5] / 2))
    # The run's own weight (0.4) is one point of the sweep; weight 0 is the base reward.
    assert means[2] == pytest.approx(m["reward_mean"], abs=1e-4)
    assert means[0] == pytest.approx(m["base_reward_mean"], abs=1e-4)

    # The sweep equals a real evaluation at another weight on the same episodes.
    at_one = evaluate_json(runs["ppo"], tmp_path / "w1.json", "coordination.expert_query_cost_weight=1.0")
    assert at_one["base_reward_mean"] == m["base_reward_mean"]
    assert at_one["reward_mean"] == pytest.approx(means[5], abs=1e-4)


def test_cost_sweep_auc_of_always_baselines_is_hand_checkable(runs, tmp_path):
    novice = evaluate_json(runs["novice"], tmp_path / "novice.json", "--cost-sweep")
    assert novice["expert_fraction"] == 0.0
    assert novice["auc"] == pytest.approx(novice["base_reward_mean"])  # a flat curve at the base reward

    expert = evaluate_json(runs["expert"], tmp_path / "expert.json", "--cost-sweep")
    assert expert["expert_fraction"] == 1.0
    base, length = expert["base_reward_mean"], expert["episode_length_mean"]
    for row in expert["cost_sweep"]:  # every step costs w x base_penalty (0.5)
        assert row["reward_mean"] == pytest.approx(base - row["cost_weight"] * 0.5 * length, abs=1e-4)
    assert expert["auc"] == pytest.approx(base - 0.25 * length, abs=1e-4)  # integral of base - 0.5 w L over [0, 1]


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize(
    "override, fragments",
    [
        ("train_novice={root}/missing.ckpt", ["train_novice", "not found"]),
        ("train_novice={expert_run}", ["train_novice", "coordinator checkpoint (always)"]),
        ("train_expert={other_game}", ["procgen/bigfish", "same game"]),
    ],
)
def test_train_with_bad_agents_fails_with_one_line(runs, override, fragments):
    paths = {"root": runs["root"], "expert_run": runs["expert"], "other_game": runs["agents"]["other_game"]}
    result = duo_ai(
        "train", "-c", CONFIGS / "procgen_ppo.yaml", f"experiments_dir={runs['root']}", "name=bad",
        f"env.task={GAME}", f"train_novice={runs['agents']['novice']}", f"train_expert={runs['agents']['expert']}",
        override.format(**paths), "--no-progress",
    )  # fmt: skip
    assert_one_line_error(result, *fragments)
    assert not (runs["root"] / "bad").exists()  # failed before touching a run folder


def test_cost_sweep_of_a_base_agent_is_a_user_error(runs):
    result = duo_ai("eval", "--checkpoint", runs["agents"]["novice"], "-n", "1", "--cost-sweep")
    assert_one_line_error(result, "--cost-sweep evaluates coordinators")


def test_always_agents_at_every_weight_by_real_evaluation(runs, tmp_path):
    """`--cost-weight w` charges w: always-novice is the same at every weight, always-expert loses
    exactly w x base_penalty per step (base_penalty 0.5 here), on the same paired episodes."""
    at = {w: evaluate_json(runs["novice"], tmp_path / f"n{w}.json", "--cost-weight", str(w)) for w in (0.0, 1.0)}
    assert at[0.0]["episode_returns"] == at[1.0]["episode_returns"]
    assert at[0.0]["cost_weight"] == 0.0 and at[1.0]["cost_weight"] == 1.0
    expert = {w: evaluate_json(runs["expert"], tmp_path / f"e{w}.json", "--cost-weight", str(w)) for w in (0.0, 0.6)}
    assert expert[0.0]["episode_level_seeds"] == expert[0.6]["episode_level_seeds"]  # paired
    base, lengths = expert[0.0]["episode_returns"], expert[0.6]["episode_lengths"]
    charged = [b - 0.6 * 0.5 * n for b, n in zip(base, lengths, strict=True)]
    assert expert[0.6]["episode_returns"] == pytest.approx(charged, abs=1e-4)
    assert expert[0.6]["episode_base_rewards"] == expert[0.0]["episode_base_rewards"]


def test_a_coordinator_evaluates_after_its_agents_are_deleted(runs, tmp_path):
    """The novice's and expert's weights travel inside the coordinator's checkpoint."""
    import shutil

    agents = tmp_path / "agents"
    for role in ("novice", "expert"):
        (agents / role).mkdir(parents=True)
        shutil.copy(runs["agents"][role], agents / role / "last.ckpt")
    result = duo_ai(
        "train", "-c", CONFIGS / "procgen_always.yaml", "name=coord", "policy.agent=expert",
        f"experiments_dir={tmp_path}", f"env.task={GAME}", f"train_novice={agents / 'novice' / 'last.ckpt'}",
        f"train_expert={agents / 'expert' / 'last.ckpt'}", "coordination.base_penalty=0.5", *TINY, "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    before = evaluate_json(tmp_path / "coord" / "last.ckpt", tmp_path / "before.json")
    shutil.rmtree(agents)
    after = evaluate_json(tmp_path / "coord" / "last.ckpt", tmp_path / "after.json")
    assert after["episode_returns"] == before["episode_returns"] and after["expert_fraction"] == 1.0


def test_export_keeps_what_evaluation_needs_and_plays_the_same_episodes(runs, tmp_path):
    """`duo-ai export`: the same evaluation from a file without the resume-only state; without the
    agents too, given train_novice/train_expert; never replaces a file; refuses a non-checkpoint."""
    import torch

    full = evaluate_json(runs["ppo"], tmp_path / "full.json", "--cost-weight", "0.4")
    slim, bare = tmp_path / "slim.ckpt", tmp_path / "bare.ckpt"
    result = duo_ai("export", runs["ppo"], "-o", slim)
    assert result.exit_code == 0, result.output
    result = duo_ai("export", runs["ppo"], "-o", bare, "--without-agents")
    assert result.exit_code == 0, result.output
    assert "train_novice=<novice.ckpt>" in " ".join(result.output.split())
    kept = torch.load(slim, weights_only=True)
    assert "agents" in kept and not {"optim_state_dict", "env_state", "rng"} & set(kept)
    assert "agents" not in torch.load(bare, weights_only=True)
    assert bare.stat().st_size * 20 < slim.stat().st_size < runs["ppo"].stat().st_size

    assert (
        evaluate_json(slim, tmp_path / "slim.json", "--cost-weight", "0.4")["episode_returns"]
        == full["episode_returns"]
    )
    agents = [f"train_novice={runs['agents']['novice']}", f"train_expert={runs['agents']['expert']}"]
    m = evaluate_json(bare, tmp_path / "bare.json", "--cost-weight", "0.4", *agents)
    assert m["episode_returns"] == full["episode_returns"] and m["expert_fraction"] == full["expert_fraction"]

    before = slim.read_bytes()
    assert_user_error(duo_ai("export", runs["ppo"], "-o", slim), "exists", "pass another -o")
    assert slim.read_bytes() == before
    not_ckpt = tmp_path / "notes.txt"
    not_ckpt.write_text("hello")
    assert_user_error(duo_ai("export", not_ckpt, "-o", tmp_path / "x.ckpt"), "not a duo-ai checkpoint")
    assert_user_error(duo_ai("export", runs["ppo"], "-o", "/proc/x.ckpt"), "/proc/x.ckpt cannot be written")
    assert not (tmp_path / "x.ckpt").exists()
