"""End to end through the `duo-ai` command on real Procgen, and its user-error handling.

One run goes through the real command line in a subprocess (the installed entry point, the
default experiments folder under the working directory); the rest call the same Typer app in
process.
"""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from duo_ai.envs import ProcgenVecEnv
from duo_ai.policies.ppo import PPOPolicy, PPOPolicyConfig
from tests.conftest import TINY, assert_user_error, cli


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """`duo-ai train` through the real command line, with a tiny config."""
    root = tmp_path_factory.mktemp("cli")
    result = subprocess.run(
        [sys.executable, "-m", "duo_ai_cli", "train", *TINY, "name=run", "--no-progress"],
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, "COLUMNS": "80"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return root / "experiments" / "run"


def test_train_writes_the_run_folder(cli_run):
    for name in ("config.yaml", "train.log", "last.ckpt", "best_test.ckpt", "summary.json"):
        assert (cli_run / name).is_file(), name
    assert list((cli_run / "tb").glob("events.out.tfevents.*"))
    assert "algorithm:" in (cli_run / "config.yaml").read_text()
    assert "iter 2 step 256" in (cli_run / "train.log").read_text()
    assert json.loads((cli_run / "summary.json").read_text())["global_step"] == 256


def test_checkpoint_is_plain_and_round_trips_bit_for_bit(cli_run):
    payload = torch.load(cli_run / "last.ckpt", weights_only=True)
    for key in ("model_state_dict", "policy_config", "optim_state_dict", "global_step", "config", "reward_normalizer"):
        assert key in payload, key
    assert payload["global_step"] == 256 and payload["config"]["env"]["task"] == "starpilot"
    assert payload["policy_config"]["model"]["name"] == "impala_ppo"
    policy = PPOPolicy(PPOPolicyConfig(**payload["policy_config"]), ProcgenVecEnv("starpilot", 1))
    policy.set_params(payload["model_state_dict"])
    params = policy.get_params()
    assert params.keys() == payload["model_state_dict"].keys()
    assert all(torch.equal(params[k], v) for k, v in payload["model_state_dict"].items())
    # ... and load_path loads the same weights.
    loaded = PPOPolicy(
        PPOPolicyConfig(model="impala_ppo", load_path=str(cli_run / "last.ckpt")), ProcgenVecEnv("starpilot", 1)
    )
    assert all(torch.equal(loaded.get_params()[k], v) for k, v in params.items())


def test_refuses_to_clobber_an_existing_run(cli_run):
    before = sha(cli_run / "last.ckpt")
    result = cli("train", *TINY, "name=run", f"experiments_dir={cli_run.parent}")
    assert_user_error(result, "already exists", "overwrite=true", "--resume")
    assert sha(cli_run / "last.ckpt") == before


@pytest.mark.slow
def test_eval_greedy_is_deterministic_and_writes_json(cli_run, tmp_path):
    outs = []
    for i in range(2):
        out = tmp_path / f"eval{i}.json"
        result = cli(
            "eval", "--checkpoint", cli_run / "last.ckpt", "--temperature", "0", "--episodes", "3", "--json", out
        )
        assert result.exit_code == 0, result.output
        assert "reward_mean" in result.stdout
        outs.append(json.loads(out.read_text()))
    assert outs[0] == outs[1]
    metrics = outs[0]
    assert metrics["num_episodes"] == 3 and len(metrics["episode_returns"]) == 3
    assert metrics["temperature"] == 0 and metrics["split"] == "test" and metrics["env"] == "starpilot"
    for key in ("reward_mean", "reward_std", "reward_ci95", "episode_length_mean"):
        assert isinstance(metrics[key], float), key


def test_eval_env_can_be_overridden(tiny_run, tmp_path):
    out = tmp_path / "sp.json"
    result = cli(
        "eval", "--checkpoint", tiny_run / "last.ckpt", "-n", 2, "--split", "train", "--json", out, "env.task=starpilot"
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert metrics["env"] == "starpilot" and metrics["split"] == "train" and metrics["num_episodes"] == 2


def test_resume_continues_from_last_checkpoint(tiny_run, tmp_path):
    import shutil

    run = tmp_path / "resumed"
    shutil.copytree(tiny_run, run)
    before = torch.load(run / "last.ckpt", weights_only=True)
    result = cli("train", "--resume", run, "algorithm.total_timesteps=512", "evaluation.num_episodes=0")
    assert result.exit_code == 0, result.output
    after = torch.load(run / "last.ckpt", weights_only=True)
    assert (before["global_step"], after["global_step"]) == (256, 512)
    assert after["iteration"] == 4
    # Adam's step counters carried over: 2 earlier iterations x 2 minibatches, then 2 more.
    first = next(iter(after["optim_state_dict"]["state"].values()))
    assert int(first["step"]) == 8


def test_unknown_game(tmp_path):
    result = cli("train", "env.task=coinrn", f"experiments_dir={tmp_path / 'experiments'}")
    assert_user_error(result, "unknown Procgen game 'coinrn'", "coinrun")
    assert not (tmp_path / "experiments").exists()


def test_unknown_override_key():
    assert_user_error(cli("train", "algorithm.lerning_rate=1e-3"), "algorithm.lerning_rate")


def test_bad_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("env: [unclosed\n")
    assert_user_error(cli("train", "--config", bad), "not valid YAML")


def test_missing_checkpoint(tmp_path):
    assert_user_error(cli("eval", "--checkpoint", tmp_path / "nope.ckpt"), "not found")


def test_corrupt_checkpoint(tiny_run, tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes((tiny_run / "last.ckpt").read_bytes()[:5000])
    assert_user_error(cli("eval", "--checkpoint", bad), "corrupt")
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    assert_user_error(cli("eval", "--checkpoint", foreign), "not a duo-ai checkpoint")


def test_checkpoint_from_another_model(tiny_run):
    result = cli("eval", "--checkpoint", tiny_run / "last.ckpt", "-n", "1", "policy.model.hidden_size=64")
    assert_user_error(result, "do not fit model", "different model")


def test_help_explains_commands():
    result = cli("--help")
    assert result.exit_code == 0 and "train" in result.stdout and "eval" in result.stdout
    result = cli("eval", "--help")
    assert "--temperature" in result.stdout and "greedy" in result.stdout


def test_version_and_short_help_on_every_command():
    import duo_ai
    from duo_ai_cli.main import app

    result = cli("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"duo-ai {duo_ai.__version__}"
    commands = [command.name or command.callback.__name__ for command in app.registered_commands]
    assert {"train", "eval", "study-report"} <= set(commands)
    for command in commands:
        result = cli(command, "-h")
        assert result.exit_code == 0 and "Usage:" in result.stdout and "--help" in result.stdout, command
