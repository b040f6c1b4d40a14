"""A user's module registers a model, an env family and a coordination baseline, and `duo-ai train --import` uses
them: the module and the commands of docs/extending.md, run as they stand there (with shorter runs)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from duo_ai.study.jobs import JobFailed, Pool
from tests.conftest import assert_user_error, cli

ROOT = Path(__file__).resolve().parents[1]
PAGE = (ROOT / "docs" / "extending.md").read_text()
MODULE = re.search(r"```python\n# my_plugin\.py\n(.*?)```", PAGE, re.S).group(1)
COMMANDS = [shlex.split(line) for line in re.search(r"```bash\n(.*?)```", PAGE, re.S).group(1).splitlines()]
# Shorter runs than the page's: one tiny iteration for PPO, two episodes per candidate for calibration.
SHORT = ["env.num_envs=2", "evaluation.num_episodes=0", "num_threads=1", "--no-progress"]
SHORT_PPO = ["algorithm.total_timesteps=16", "algorithm.num_steps=8", "algorithm.num_minibatches=1"]
SHORT_CALIBRATE = ["algorithm.num_episodes=2", "algorithm.num_envs=2", "coordination.base_penalty=0.5"]


def duo(folder: Path, *args: str) -> subprocess.CompletedProcess:
    """`duo-ai ARGS...` run in `folder` (where my_plugin.py is), with this checkout's code."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "duo_ai_cli", *args]
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def plugin_folder(tmp_path: Path) -> Path:
    (tmp_path / "my_plugin.py").write_text(MODULE)
    return tmp_path


@pytest.mark.slow  # four trainings, each a fresh process (~20 s)
def test_the_pages_commands_train_with_the_modules_model_env_family_and_baseline(plugin_folder):
    assert [command[:4] for command in COMMANDS] == [["duo-ai", "train", "--import", "my_plugin"]] * 4
    for command in COMMANDS:
        short = SHORT_CALIBRATE if "policy.name=even_steps" in command else SHORT_PPO
        done = duo(plugin_folder, *command[1:], *SHORT, *short)
        assert done.returncode == 0, done.stderr[-3000:]
    runs = plugin_folder / "experiments"
    for name in ("tiny", "novice", "expert", "even"):
        assert (runs / name / "last.ckpt").is_file(), name
    tiny = yaml.safe_load((runs / "tiny" / "config.yaml").read_text())
    assert tiny["env"]["name"] == "classic_control"
    assert tiny["policy"]["model"] == {"name": "tiny_mlp", "hidden_size": 32}
    even = yaml.safe_load((runs / "even" / "config.yaml").read_text())
    assert even["policy"]["name"] == "even_steps" and even["algorithm"]["name"] == "calibrate"
    # Calibration tried every candidate and kept one of them in the checkpoint.
    log = (runs / "even" / "train.log").read_text()
    assert all(f"candidate {until} |" in log for until in (0, 8, 32)), log[-2000:]
    checkpoint = torch.load(runs / "even" / "last.ckpt", weights_only=True)
    assert int(checkpoint["model_state_dict"]["until"]) in (0, 8, 32), checkpoint["calibration"]


def test_a_registered_family_checks_its_tasks_and_the_unknown_family_names_it(plugin_folder):
    cartpole = ["train", "--import", "my_plugin", "-c", "cartpole", "env.name=classic_control"]
    done = duo(plugin_folder, *cartpole, "env.task=Pendulum-v1")
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "error: unknown classic-control task 'Pendulum-v1'; choose one of: CartPole-v1, Acrobot-v1, MountainCar-v0"
    ], done.stderr
    done = duo(plugin_folder, *cartpole, "env.name=classic", "--import", "my_plugin")
    assert done.returncode == 2 and "one of classic_control, gym, minigrid, procgen" in done.stderr, done.stderr
    assert not (plugin_folder / "experiments").exists()


def test_a_module_that_cannot_be_imported_is_one_line_before_any_work(tmp_path):
    result = cli("train", "--import", "my_plugn", f"experiments_dir={tmp_path}")
    assert_user_error(result, "--import my_plugn", "no module named 'my_plugn'")
    assert not any(tmp_path.iterdir())
    assert_user_error(cli("eval", "--import", "no.such.module", "--checkpoint", tmp_path), "no.such.module")


def test_a_study_passes_its_imports_on_to_the_runs_it_starts(plugin_folder, monkeypatch):
    monkeypatch.chdir(plugin_folder)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    train = ["train", "-c", "cartpole", "env.name=classic_control", "name=run", *SHORT, *SHORT_PPO]
    with Pool(1, plugin_folder / "logs") as pool:
        with pytest.raises(JobFailed):  # without the module, classic_control is no env family
            pool.now("plain", lambda out: out.run(train))
    with Pool(1, plugin_folder / "logs", ["--import", "my_plugin"]) as pool:
        pool.now("imported", lambda out: out.run(train))
    assert (plugin_folder / "experiments" / "run" / "last.ckpt").is_file()


def test_an_installed_package_in_the_entry_point_group_registers_without_import(tmp_path):
    """A package that lists my_plugin in `duo_ai.plugins` (its dist-info on the path, as pip installs it)."""
    site = tmp_path / "site"
    (site / "my_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "my_plugin-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin\nVersion: 0.1\n")
    (site / "my_plugin-0.1.dist-info" / "entry_points.txt").write_text("[duo_ai.plugins]\nmy_plugin = my_plugin\n")
    (site / "my_plugin.py").write_text(MODULE)
    train = ["-m", "duo_ai_cli", "train", "-c", ROOT / "configs" / "cartpole.yaml", "env.name=classic_control"]
    train += ["policy.model=tiny_mlp", f"experiments_dir={tmp_path}", "name=tiny", *SHORT, *SHORT_PPO]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{site}"}
    done = subprocess.run([sys.executable, *map(str, train)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "tiny" / "last.ckpt").is_file()
