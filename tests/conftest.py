"""Shared fixtures: tiny real training runs on real Procgen, made once per test worker; the MiniGrid
smoke study, made once per test run."""

from __future__ import annotations

from pathlib import Path

import pytest
from filelock import FileLock
from typer.testing import CliRunner, Result

from duo_ai.config import load_config
from duo_ai.training import Trainer
from duo_ai_cli.main import app

# A real but tiny PPO run: 4 envs x 32 steps, 2 iterations, 2 evaluation episodes. On starpilot, whose
# episodes of an untrained agent last ~80 steps (coinrun's ~700 made the evaluation most of the time).
TINY = [
    "env.task=starpilot",
    "env.num_envs=4",
    "algorithm.num_steps=32",
    "algorithm.num_minibatches=2",
    "algorithm.update_epochs=1",
    "algorithm.total_timesteps=256",
    "algorithm.log_freq=1",
    "algorithm.save_freq=1",
    "evaluation.num_episodes=2",
    "evaluation.num_envs=2",
    "num_threads=1",
]


def train_tiny(experiments_dir: Path, name: str, *extra: str) -> Path:
    """Train a tiny starpilot agent through the real Trainer; returns its run folder."""
    config = load_config(overrides=[*TINY, f"experiments_dir={experiments_dir}", f"name={name}", *extra])
    with Trainer(config, show_progress=False) as trainer:
        trainer.run()
    return experiments_dir / name


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest tests first (`@pytest.mark.slow(seconds=N)` says how long, 20 if unsaid). With
    `--dist loadfile --no-loadscope-reorder` (pyproject.toml) a worker takes a whole file at a time,
    in the order of the files' first tests: the files holding the studies start at once, on both
    workers, and the workers end together on short files, each module's fixtures made once."""

    def seconds(item: pytest.Item) -> float:
        slow = item.get_closest_marker("slow")
        return 0 if slow is None else slow.kwargs.get("seconds", 20)

    items.sort(key=seconds, reverse=True)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run folder of a tiny starpilot PPO agent (last.ckpt, best_test.ckpt, config.yaml...)."""
    return train_tiny(tmp_path_factory.mktemp("experiments"), "tiny")


@pytest.fixture(scope="session")
def minigrid_smoke_study(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """`duo-ai study minigrid_smoke --jobs 2` (the local launcher): its folder, read by the tests that
    need it (the study's results, the Slurm launcher's run of the same study). Made once per test run:
    the workers of `-n 2` share it (a study takes minutes of both cores)."""
    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        shared = shared.parent  # the run's folder, above each worker's own
    out = shared / "minigrid_smoke_study"
    with FileLock(shared / "minigrid_smoke_study.lock"), pytest.MonkeyPatch.context() as env:
        # On the CPU on every machine, as the Slurm launcher's run of it with no GPU per job.
        env.setenv("CUDA_VISIBLE_DEVICES", "")
        if not (out / "table.json").is_file():
            result = cli("study", "minigrid_smoke", "--out", out, "--jobs", "2")
            assert result.exit_code == 0, result.output
    return out


def cli(*args: object) -> Result:
    """`duo-ai ARGS...` in this process (no subprocess: each would pay ~2 s of torch import)."""
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_user_error(result: Result, *fragments: str) -> None:
    """Exit code 2, no traceback, exactly one line `error: ...` on stderr that contains each fragment."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
