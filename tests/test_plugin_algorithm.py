"""A user's module registers an algorithm (A2C) with its own config and check across sections, and `duo-ai train
--import` trains and resumes with it: the module and the commands of docs/extending.md's "An algorithm", run as they
stand there (with shorter runs)."""

from __future__ import annotations

import re
import shlex

import pytest
import torch
import yaml

from tests.test_plugins import PAGE, duo

SECTION = PAGE[PAGE.index("## An algorithm") :]
MODULE = re.search(r"```python\n# my_algorithm\.py\n(.*?)```", SECTION, re.S).group(1)
COMMANDS = [shlex.split(line) for line in re.search(r"```bash\n(.*?)```", SECTION, re.S).group(1).splitlines()]
# Shorter runs than the page's: 2 envs x 5 steps a rollout, 4 rollouts, then 4 more after the resume; every
# iteration saved and kept, so the first update's weights can be compared with the last's.
SHORT = ["env.num_envs=2", "evaluation.num_episodes=0", "num_threads=1", "keep_checkpoints=10", "--no-progress"]
SHORT += ["algorithm.save_freq=1", "algorithm.log_freq=1"]


@pytest.fixture
def algorithm_folder(tmp_path):
    (tmp_path / "my_algorithm.py").write_text(MODULE)
    return tmp_path


def weights(path):
    return torch.load(path, weights_only=True)["model_state_dict"]


def changed(before, after):
    return any(not torch.equal(before[k], after[k]) for k in before)


def test_the_pages_algorithm_trains_one_step_per_rollout_and_resumes(algorithm_folder):
    train, resume = COMMANDS
    assert train[:4] == resume[:4] == ["duo-ai", "train", "--import", "my_algorithm"] and "--resume" in resume
    done = duo(algorithm_folder, *train[1:], *SHORT, "algorithm.total_timesteps=40")
    assert done.returncode == 0, done.stderr[-3000:]
    run = algorithm_folder / "experiments" / "a2c"
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["algorithm"]["name"] == "a2c" and config["algorithm"]["num_steps"] == 5
    assert "clip_coef" not in config["algorithm"]  # A2C's own settings, not PPO's
    first = torch.load(run / "last.ckpt", weights_only=True)
    assert (first["iteration"], first["global_step"]) == (4, 40)
    # One gradient step per rollout (PPO with cartpole.yaml's settings takes 4 epochs x 4 minibatches).
    assert int(next(iter(first["optim_state_dict"]["state"].values()))["step"]) == 4
    assert changed(weights(run / "checkpoints" / "step_000000000010.ckpt"), first["model_state_dict"])

    done = duo(algorithm_folder, *resume[1:], *SHORT, "algorithm.total_timesteps=80")
    assert done.returncode == 0, done.stderr[-3000:]
    after = torch.load(run / "last.ckpt", weights_only=True)
    assert (after["iteration"], after["global_step"], after["segments"]) == (8, 80, 2)
    assert int(next(iter(after["optim_state_dict"]["state"].values()))["step"]) == 8
    assert changed(first["model_state_dict"], after["model_state_dict"])


def test_the_algorithms_own_check_across_sections_is_the_pages_one_line_before_any_work(algorithm_folder):
    done = duo(algorithm_folder, *COMMANDS[0][1:], "policy.name=random")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("error: algorithm.name=a2c trains an actor-critic"), lines
    assert f"`{lines[0]}`" in " ".join(SECTION.split())  # the page quotes it word for word
    assert not (algorithm_folder / "experiments").exists()
