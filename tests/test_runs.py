"""Run folders that never lose data (overwrite), resume that keeps the run what it is, run_info.json."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import duo_ai
from duo_ai.algorithms.ppo import PPO
from duo_ai.core.errors import ConfigError
from duo_ai.runs import git_state, resume_config
from duo_ai.training import Trainer
from duo_ai_cli.main import app
from tests.conftest import TINY

runner = CliRunner()
# A tiny run without its evaluation (the slow part): a few seconds.
QUICK = [*TINY, "evaluation.num_episodes=0", "--no-progress"]


def hashes(folder: Path) -> dict[str, str]:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture
def old_run(tiny_run, tmp_path) -> Path:
    """exp/R: a finished run to be overwritten (a copy of the shared tiny run)."""
    shutil.copytree(tiny_run, tmp_path / "exp" / "R")
    return tmp_path / "exp" / "R"


def train(exp: Path, *args: str):
    return runner.invoke(app, ["train", *QUICK, f"experiments_dir={exp}", *args])


def test_overwrite_refused_by_config_leaves_the_old_run_byte_identical(old_run):
    before = hashes(old_run)
    result = train(old_run.parent, "name=R", "overwrite=true", "algorithm.num_minibatches=7")
    assert result.exit_code == 2 and "num_minibatches=7" in result.output
    assert hashes(old_run) == before
    assert [p.name for p in old_run.parent.iterdir()] == ["R"]


def test_overwrite_that_crashes_before_its_first_checkpoint_restores_the_old_run(old_run, monkeypatch):
    before = hashes(old_run)

    def boom(self):
        raise RuntimeError("boom")

    monkeypatch.setattr(PPO, "train_iteration", boom)
    result = train(old_run.parent, "name=R", "overwrite=true")
    assert result.exit_code == 1, result.output
    assert "restored the previous run in" in result.output
    assert result.output.strip().splitlines()[-1].startswith("error: crashed with RuntimeError: boom")
    assert hashes(old_run) == before
    assert [p.name for p in old_run.parent.iterdir()] == ["R"]  # neither the new run nor an aside copy left


def test_a_trainer_that_fails_once_the_folder_is_open_closes_it_and_restores_the_old_run(old_run, monkeypatch):
    """A failure at the end of Trainer's construction (the old run moved aside, the new folder locked,
    the logger open) undoes all of it."""
    before = hashes(old_run)

    def boom(self, resume):
        raise RuntimeError("boom while starting")

    monkeypatch.setattr(Trainer, "record_run_info", boom)
    result = train(old_run.parent, "name=R", "overwrite=true")
    assert result.exit_code == 1, result.output
    assert "restored the previous run in" in result.output
    assert hashes(old_run) == before  # run.lock released: the old run's files alone
    assert [p.name for p in old_run.parent.iterdir()] == ["R"]


def test_successful_overwrite_replaces_the_run_and_removes_the_moved_aside_copy(old_run):
    old_step = torch.load(old_run / "last.ckpt", weights_only=True)["global_step"]
    result = train(old_run.parent, "name=R", "overwrite=true", "algorithm.total_timesteps=128")
    assert result.exit_code == 0, result.output
    assert [p.name for p in old_run.parent.iterdir()] == ["R"]
    assert (old_step, torch.load(old_run / "last.ckpt", weights_only=True)["global_step"]) == (256, 128)
    log = (old_run / "train.log").read_text()
    assert "overwrite: moved the previous run to" in log and ".R.old-" in log
    assert not (old_run / "best_test.ckpt").exists()  # nothing of the old run mixed into the new one


@pytest.mark.parametrize("name", ["..", ".", "../x", "/tmp/duo_ai_abs_run", "a/b"])
def test_names_that_are_not_plain_folder_names_are_refused(old_run, name):
    before = hashes(old_run.parent.parent)
    result = train(old_run.parent, f"name={name}", "overwrite=true")
    assert result.exit_code == 2 and "plain folder name" in result.output
    assert hashes(old_run.parent.parent) == before
    assert not Path("/tmp/duo_ai_abs_run").exists()


def test_resume_echoes_what_it_extends_and_refuses_what_it_would_change(tiny_run):
    config, changes = resume_config(
        tiny_run, ["algorithm.total_timesteps=512", "evaluation.temperature=0", "algorithm.save_freq=2"]
    )
    assert changes == [
        "resume: algorithm.save_freq 1 -> 2",
        "resume: algorithm.total_timesteps 256 -> 512",
        "resume: evaluation.temperature 1.0 -> 0.0",
    ]
    assert (config.name, Path(config.experiments_dir)) == (tiny_run.name, tiny_run.parent)
    assert resume_config(tiny_run, ["name=tiny", "env.task=starpilot"])[1] == []  # no change, nothing to refuse
    # What the agent learns from and how far each update goes are what was trained, too.
    refused = ("env.task=bigfish", "policy.model.channels=[8]", "algorithm.gamma=0.99", "algorithm.target_kl=0.01")
    for override in (*refused, "algorithm.reward_clip=10"):
        with pytest.raises(ConfigError, match=f"cannot change {override.split('=')[0]}"):
            resume_config(tiny_run, [override])


def test_resume_through_the_cli_echoes_its_changes_and_keeps_run_info_history(tiny_run, tmp_path):
    run = tmp_path / "resumed"
    shutil.copytree(tiny_run, run)
    args = ["--resume", str(run), "algorithm.total_timesteps=384", "evaluation.num_episodes=0", "--no-progress"]
    result = runner.invoke(app, ["train", *args])
    assert result.exit_code == 0, result.output
    assert "resume: algorithm.total_timesteps 256 -> 384" in result.output
    assert "resume: evaluation.num_episodes 2 -> 0" in result.output
    assert torch.load(run / "last.ckpt", weights_only=True)["global_step"] == 384
    info = json.loads((run / "run_info.json").read_text())
    assert info["resumed"] is True and [p["resumed"] for p in info["previous"]] == [False]


def test_run_info_records_what_ran(tiny_run):
    info = json.loads((tiny_run / "run_info.json").read_text())
    assert info["device"] == "cpu" and info["precision"] in ("fp32", "bf16")
    assert info["num_threads"] == 1 and info["world_size"] == 1 and info["resumed"] is False
    assert info["versions"]["torch"] == torch.__version__ and info["versions"]["duo-ai"] == duo_ai.__version__
    assert info["versions"]["gymnasium"] and info["versions"]["procgen"]
    package = Path(duo_ai.__file__).resolve().parent
    head = subprocess.run(["git", "-C", str(package), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0 and (package.parent / ".git").exists():
        assert info["git_commit"] == head.stdout.strip()
    events = b"".join(p.read_bytes() for p in (tiny_run / "tb").glob("events.out.tfevents.*"))
    assert b"run_info" in events and b"precision" in events  # the TensorBoard text table


def test_git_commit_is_quietly_absent_outside_a_checkout(tmp_path, monkeypatch):
    (tmp_path / "duo_ai").mkdir()
    monkeypatch.setattr(duo_ai, "__file__", str(tmp_path / "duo_ai" / "__init__.py"))
    assert git_state() == {}


def test_a_crash_is_logged_in_train_log_and_exits_non_zero(tmp_path, monkeypatch):
    def boom(self):
        raise RuntimeError("boom")

    monkeypatch.setattr(PPO, "train_iteration", boom)
    result = train(tmp_path / "exp", "name=crash")
    assert result.exit_code == 1
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: crashed with RuntimeError: boom") and "exp/crash/train.log" in last
    assert "run failed: RuntimeError: boom" in (tmp_path / "exp" / "crash" / "train.log").read_text()
