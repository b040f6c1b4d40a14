"""Exact resume: `kill -9` at any moment, `--resume`, and the run ends bit-identical to one never stopped.

Also: records stay continuous (TensorBoard steps unique, the log says where it resumed, the summary
covers every segment), a finished run resumes to nothing, a corrupt newest checkpoint falls back
to an older one, and the best checkpoint is never replaced by a worse one after a resume.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from duo_ai.core.checkpoint import load_checkpoint, save_checkpoint
from tests.conftest import cli

# 6 iterations of 4 envs x 32 steps on starpilot (short episodes), evaluated every 2 iterations,
# a checkpoint after every iteration.
RUN = [
    "env.task=starpilot",
    "env.num_envs=4",
    "env.num_threads=1",
    "num_threads=1",
    "algorithm.num_steps=32",
    "algorithm.num_minibatches=2",
    "algorithm.update_epochs=1",
    "algorithm.total_timesteps=768",
    "algorithm.log_freq=1",
    "algorithm.save_freq=1",
    "algorithm.eval_freq=2",
    "evaluation.num_episodes=2",
    "evaluation.num_envs=2",
    "--no-progress",
]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "last.ckpt")["model_state_dict"]


def assert_bit_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The same run, never interrupted."""
    exp = tmp_path_factory.mktemp("resume")
    result = cli("train", *RUN, f"experiments_dir={exp}", "name=reference")
    assert result.exit_code == 0, result.output
    return exp / "reference"


def start_and_kill(exp: Path, name: str, iteration: int) -> Path:
    """`duo-ai train` in a subprocess, killed with SIGKILL as soon as it logs `iteration`.

    The log line comes before that iteration's evaluation and checkpoint, so the kill lands in
    the evaluation, the save or the next rollout, wherever the process happens to be.
    """
    cmd = [sys.executable, "-m", "duo_ai_cli", "train", *RUN, f"experiments_dir={exp}", f"name={name}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = exp / name / "train.log"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if log.is_file() and f"iter {iteration} step" in log.read_text():
            break
        time.sleep(0.005)
    assert proc.poll() is None, f"the run ended before iteration {iteration}: {proc.stderr.read()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return exp / name


@pytest.mark.slow
@pytest.mark.parametrize("iteration", [2, 4, 5])
def test_kill_9_then_resume_is_bit_identical_to_never_stopping(reference, tmp_path, iteration):
    run = start_and_kill(tmp_path, "killed", iteration)
    stopped_at = load_checkpoint(run / "last.ckpt")["global_step"]
    assert stopped_at < 768
    result = cli("train", "--resume", run)
    assert result.exit_code == 0, result.output
    assert_bit_identical(weights(run), weights(reference))
    log = (run / "train.log").read_text()
    assert f"resumed from {run / 'last.ckpt'} at step {stopped_at:,}" in log
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["global_step"], summary["segments"]) == (768, 2)
    assert summary["eval"].keys() == {"test"}


@pytest.mark.slow
def test_a_torn_newest_checkpoint_falls_back_to_the_one_before(reference, tmp_path):
    """A checkpoint cut short (a crash mid-save, a full disk): resume from the previous one, still exact."""
    run = start_and_kill(tmp_path, "torn", 4)
    newest = sorted((run / "checkpoints").glob("step_*.ckpt"))[-1]
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])  # last.ckpt is the same file (a hard link): torn too
    result = cli("train", "--resume", run)
    assert result.exit_code == 0, result.output
    log = (run / "train.log").read_text()
    assert "skipped an unreadable checkpoint" in log and "resumed from" in log
    assert_bit_identical(weights(run), weights(reference))


def csv_steps(path: Path) -> list[int]:
    import csv

    return [int(row["step"]) for row in csv.DictReader(path.open())]


@pytest.mark.slow
def test_tensorboard_and_csv_steps_are_unique_after_a_resume(reference, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = start_and_kill(tmp_path, "tb", 2)
    assert cli("train", "--resume", run).exit_code == 0
    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    steps = [e.step for e in events.Scalars("loss/policy")]
    assert steps == sorted(set(steps)) and steps[-1] == 768, steps
    reference_events = EventAccumulator(str(reference / "tb"))
    reference_events.Reload()
    assert steps == [e.step for e in reference_events.Scalars("loss/policy")]
    for name in ("progress.csv", "eval.csv"):
        assert csv_steps(run / name) == csv_steps(reference / name), name


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


def test_resuming_a_finished_run_says_so_and_changes_nothing(reference):
    before = digest(reference)
    result = cli("train", "--resume", reference)
    assert result.exit_code == 0, result.output
    assert "already finished at step 768" in result.output
    assert digest(reference) == before


def test_the_best_checkpoint_is_never_replaced_by_a_worse_one_after_resume(reference, tmp_path):
    """last.ckpt's record of the best may be older than best_test.ckpt: the file on disk wins."""
    import shutil

    run = tmp_path / "best"
    shutil.copytree(reference, run)
    best = load_checkpoint(run / "best_test.ckpt")
    best["eval_metrics"]["reward_mean"] = 1e9  # as if a later, better evaluation was not in last.ckpt
    best.pop("format")
    save_checkpoint(run / "best_test.ckpt", best)
    before = (run / "best_test.ckpt").read_bytes()
    result = cli("train", "--resume", run, "algorithm.total_timesteps=1024")
    assert result.exit_code == 0, result.output
    assert (run / "best_test.ckpt").read_bytes() == before
    assert load_checkpoint(run / "last.ckpt")["best"]["test"] == 1e9


def test_only_the_last_few_checkpoints_are_kept(reference):
    kept = sorted(p.name for p in (reference / "checkpoints").glob("step_*.ckpt"))
    assert kept == ["step_000000000512.ckpt", "step_000000000640.ckpt", "step_000000000768.ckpt"]
    assert os.path.samefile(reference / "last.ckpt", reference / "checkpoints" / kept[-1])
