"""Data-parallel training under torchrun, on this CPU with gloo: two processes train one PPO.

- every process holds the same weights; the all-reduced gradient with global advantage moments is
  one process's gradient over both processes' rows; the reward normaliser runs over all envs;
- only rank 0 writes the run folder; a data-parallel checkpoint resumes bit-identically; resuming
  with another number of processes is refused;
- mistakes end in one line and never hang: no rendezvous, a rank that dies, configs that differ,
  envs that do not split.

Each test launches real processes (`torchrun --standalone`, or RANK/WORLD_SIZE/MASTER_* by hand).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from duo_ai.algorithms.normalize import ReturnNormalizer, SharedReturnNormalizer
from duo_ai.core.checkpoint import load_checkpoint
from tests.conftest import assert_user_error, cli

ROOT = Path(__file__).resolve().parents[1]
# 3 iterations of 4 envs (2 per process) x 16 steps on starpilot, a checkpoint after each.
RUN = [
    "env.task=starpilot",
    "env.num_envs=4",
    "env.num_threads=1",
    "num_threads=1",
    "algorithm.num_steps=16",
    "algorithm.num_minibatches=2",
    "algorithm.update_epochs=1",
    "algorithm.total_timesteps=192",
    "algorithm.log_freq=1",
    "algorithm.save_freq=1",
    "algorithm.eval_freq=2",
    "evaluation.num_episodes=2",
    "evaluation.num_envs=2",
    "distributed_timeout_s=60",
    "--no-progress",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def torchrun(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]
    return subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(rank: int, port: int, cwd: Path, *args: str, world_size: int = 2) -> subprocess.Popen:
    """`duo-ai train ARGS` as rank `rank` of `world_size`, rendezvous at 127.0.0.1:port set by hand."""
    env = {**ENV, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size)}
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    cmd = [sys.executable, "-m", "duo_ai_cli", "train", *args]
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def error_lines(stderr: str) -> list[str]:
    """Our own lines: torch's C++ logging ([E...]/[W...] and stack frames) may come before them."""
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "last.ckpt")["model_state_dict"]


def assert_bit_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


# -- the update is one process's update over every process's rows ---------------------------------


@pytest.mark.slow
def test_processes_keep_identical_weights_and_their_gradient_is_one_process_gradient(tmp_path):
    done = torchrun("tests/dp_helper.py", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["initial"] == ranks[1]["initial"]  # rank 0's initial weights, broadcast
    assert ranks[0]["trained"] == ranks[1]["trained"] != ranks[0]["initial"]  # weights and Adam state
    assert [r["global_step"] for r in ranks] == [128, 128]  # 2 iterations x 16 steps x 4 envs in all
    assert [r["num_envs"] for r in ranks] == [2, 2]
    assert ranks[0]["normalizer"] == ranks[1]["normalizer"]
    assert ranks[0]["stats"]["loss/policy"] == ranks[1]["stats"]["loss/policy"]  # reduced, not per process

    grads = [torch.load(tmp_path / f"grads_rank{r}.pt") for r in range(2)]
    one = torch.load(tmp_path / "grads_one_process.pt")
    local = torch.load(tmp_path / "grads_local_moments_rank0.pt")
    assert_bit_identical(grads[0], grads[1])
    for name in one:
        torch.testing.assert_close(grads[0][name], one[name], rtol=1e-4, atol=1e-6, msg=name)
    # Without global advantage moments the gradient is another one (the test can tell).
    assert any((local[k] - one[k]).abs().max() > 0.05 * one[k].abs().max() for k in one)


@pytest.mark.slow
def test_target_kl_stops_every_process_at_the_same_minibatch_and_the_reward_clip_holds(tmp_path):
    # fruitbot: a fruit eaten early gives a reward that the normaliser scales far beyond 0.5 (about 5).
    clip = ["env.task=fruitbot", "algorithm.reward_clip=0.5"]
    done = torchrun("tests/dp_helper.py", str(tmp_path), "algorithm.target_kl=1e-6", *clip)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["trained"] == ranks[1]["trained"]  # the same steps, so the same weights and Adam state
    # 2 epochs x 2 minibatches: the first trains the rollout's own policy (approx_kl ~ 0), the second is over.
    assert ranks[0]["stats"]["loss/minibatches"] == ranks[1]["stats"]["loss/minibatches"] == 2
    # The rewards are scaled over both processes' envs at the rollout's end, then clipped.
    assert max(r["max_abs_reward"] for r in ranks) == 0.5


@pytest.mark.slow
def test_a_coordinator_keeps_rank_0s_fitted_feature_scales_in_every_process(tmp_path, tmp_path_factory):
    from tests.coord_fixtures import agent_checkpoints

    agents = agent_checkpoints(tmp_path_factory)
    coordinator = [
        "env.task=starpilot",
        f"train_novice={agents['novice']}",
        f"train_expert={agents['expert']}",
        "coordination.base_penalty=0.5",
        "coordination.train_agent_splits=[train]",
        "policy.model.name=impala_coord_ppo",
        "policy.model.feature_type=hidden_dist",
        "policy.model.normalize_features=true",
    ]
    done = torchrun("tests/dp_helper.py", str(tmp_path), *coordinator)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    # Each process fits the scales on its own first minibatch; rank 0's are then everyone's.
    assert ranks[0]["buffers"]["standardizers.hidden.fitted"] == 1
    assert ranks[0]["buffers"] == ranks[1]["buffers"]
    assert ranks[0]["trained"] == ranks[1]["trained"] != ranks[0]["initial"]


def test_the_shared_reward_normaliser_is_one_normaliser_over_all_envs():
    rng = np.random.default_rng(0)
    steps, per_process = 50, 3
    rewards = rng.exponential(size=(steps, 2 * per_process)).astype(np.float32)
    dones = rng.random((steps, 2 * per_process)) < 0.1
    one = ReturnNormalizer(2 * per_process, 0.99)
    expected = np.stack([one(rewards[t], dones[t]) for t in range(steps)])

    pair = [SharedReturnNormalizer(per_process, 0.99, 2 * per_process, all_reduce=None) for _ in range(2)]
    for t in range(steps):
        for r, normalizer in enumerate(pair):
            cols = slice(r * per_process, (r + 1) * per_process)
            assert np.array_equal(normalizer(rewards[t, cols], dones[t, cols]), rewards[t, cols])  # raw until the end
    total = sum(np.asarray(n.sums) for n in pair)
    for normalizer in pair:
        normalizer.all_reduce = lambda sums: total
    scaled = np.concatenate([n.normalise() for n in pair], axis=1)
    np.testing.assert_allclose(scaled, expected, rtol=1e-5)
    for normalizer in pair:
        assert normalizer.var == pytest.approx(one.var, rel=1e-9) and normalizer.count == pytest.approx(one.count)
        assert isinstance(normalizer.state_dict()["mean"], float)  # checkpoints hold plain numbers


# -- one writer, exact resume -------------------------------------------------------------------


@pytest.fixture(scope="module")
def dp_run(tmp_path_factory) -> tuple[Path, Path, tuple[str, str]]:
    """Two 2-process runs (`--seeds 1,2`: one process group for both) launched by hand, each rank in
    its own working folder with experiments_dir=exp; returns seed 1's run folder."""
    base = tmp_path_factory.mktemp("dp")
    cwd = [base / "rank0", base / "rank1"]
    for folder in cwd:
        folder.mkdir()
    port = free_port()
    procs = [launch(r, port, cwd[r], *RUN, "experiments_dir=exp", "name=dp", "--seeds", "1,2") for r in range(2)]
    results = [finish(p) for p in procs]
    assert [code for code, _ in results] == [0, 0], results
    assert (cwd[0] / "exp" / "dp_s2" / "last.ckpt").is_file()
    return cwd[0] / "exp" / "dp_s1", cwd[1], (results[0][1], results[1][1])


def assert_rank_0_alone_wrote_the_global_run(dp_run) -> None:
    """Rank 1 wrote and logged nothing; rank 0's run folder is the whole run's, which one process
    cannot resume."""
    run, rank1_cwd, (_, rank1_stderr) = dp_run
    assert list(rank1_cwd.iterdir()) == []  # rank 1 wrote nothing, not even its experiments folder
    assert "error" not in rank1_stderr.lower() and "iter" not in rank1_stderr
    for name in ("config.yaml", "run_info.json", "train.log", "progress.csv", "eval.csv", "summary.json"):
        assert (run / name).is_file(), name
    assert json.loads((run / "run_info.json").read_text())["world_size"] == 2
    summary = json.loads((run / "summary.json").read_text())
    assert summary["global_step"] == 192 and summary["iterations"] == 3  # 4 envs in all, not 2
    steps = [int(line.split(",")[1]) for line in (run / "progress.csv").read_text().splitlines()[1:]]
    assert steps == [64, 128, 192]
    checkpoint = load_checkpoint(run / "last.ckpt")
    assert checkpoint["world_size"] == 2 and len(checkpoint["rank_states"]) == 2
    own = checkpoint["rank_states"]
    assert [len(r["env_state"]["games"]) for r in own] == [2, 2]
    assert own[0]["env_state"]["games"] != own[1]["env_state"]["games"]  # each process its own levels
    assert "env_state" not in checkpoint and "rng" not in checkpoint  # per process only
    # Resuming it in one process is refused in one line, and changes nothing.
    before = (run / "last.ckpt").read_bytes()
    assert_user_error(cli("train", "--resume", run), "trained in 2", "torchrun")
    assert (run / "last.ckpt").read_bytes() == before


@pytest.mark.slow(seconds=45)  # two torchrun trainings, then the resume and its reference
def test_a_data_parallel_run_is_rank_0s_alone_and_resumes_bit_identically(dp_run, tmp_path):
    assert_rank_0_alone_wrote_the_global_run(dp_run)
    run = tmp_path / "dp"
    shutil.copytree(dp_run[0], run)
    more = ["algorithm.total_timesteps=256", "--no-progress"]
    resumed = torchrun("-m", "duo_ai_cli", "train", "--resume", str(run), *more)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    reference = torchrun(
        "-m", "duo_ai_cli", "train", *RUN, "algorithm.total_timesteps=256", f"experiments_dir={tmp_path}", "name=ref"
    )
    assert reference.returncode == 0, reference.stderr[-3000:]
    assert_bit_identical(weights(run), weights(tmp_path / "ref"))
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["global_step"], summary["segments"]) == (256, 2)
    assert "resumed from" in (run / "train.log").read_text()


# -- mistakes end in one line, never a hang ------------------------------------------------------


def test_no_rendezvous_ends_in_one_line_within_the_timeout(tmp_path):
    start = time.monotonic()
    proc = launch(0, free_port(), ROOT, *RUN, f"experiments_dir={tmp_path}", "distributed_timeout_s=3")
    code, stderr = finish(proc, timeout=60)
    assert code == 1 and time.monotonic() - start < 45
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: rank 0 of 2: the rendezvous"), stderr
    assert "Traceback" not in stderr and not any(tmp_path.iterdir())


@pytest.mark.slow
def test_a_rank_that_dies_ends_the_others_at_once(tmp_path):
    port = free_port()
    long_run = [*RUN, "algorithm.total_timesteps=100000", f"experiments_dir={tmp_path}", "name=dies"]
    procs = [launch(r, port, ROOT, *long_run) for r in range(2)]
    log = tmp_path / "dies" / "train.log"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not (log.is_file() and "iter 1 step" in log.read_text()):
        assert procs[0].poll() is None, procs[0].communicate()
        time.sleep(0.05)
    os.kill(procs[1].pid, signal.SIGKILL)
    killed = time.monotonic()
    code, stderr = finish(procs[0], timeout=30)
    procs[1].wait()
    assert code == 1 and time.monotonic() - killed < 20  # not distributed_timeout_s (60 s)
    assert "Traceback" not in stderr
    lines = error_lines(stderr)
    assert len(lines) == 1 and lines[0].startswith("error: rank 0 of 2:") and "failed" in lines[0], stderr
    assert "run failed: DistributedError" in log.read_text()


def test_processes_with_different_configs_refuse_to_train(tmp_path):
    port = free_port()
    procs = [launch(r, port, ROOT, *RUN, f"experiments_dir={tmp_path}", f"seed={r + 1}") for r in range(2)]
    for proc in procs:
        code, stderr = finish(proc, timeout=90)
        assert code == 2 and error_lines(stderr) and "resolved different configs" in error_lines(stderr)[0], stderr
        assert "Traceback" not in stderr
    assert not any(tmp_path.iterdir())


def test_envs_that_do_not_split_and_a_missing_rendezvous_are_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    exp = f"experiments_dir={tmp_path}"
    assert_user_error(cli("train", "env.num_envs=3", exp), "env.num_envs=3", "2 processes", "multiple of 2")
    assert_user_error(cli("train", "env.num_envs=4", "algorithm.num_minibatches=512", exp), "each process's rollout")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    assert_user_error(cli("train", "env.num_envs=4", exp), "MASTER_ADDR", "torchrun --nproc-per-node 2")
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_bench_under_torchrun_reports_total_and_per_process_speed(tmp_path):
    out = tmp_path / "bench.json"
    small = ["--num-envs", "4", "--num-steps", "16", "--num-minibatches", "2", "--epochs", "1", "--iterations", "1"]
    done = torchrun("-m", "duo_ai_cli", "bench", *small, "--no-baseline", "--json", str(out), "num_threads=1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("training loop (SPS)") == 1  # rank 0 alone prints
    report = json.loads(out.read_text())
    assert report["world_size"] == 2 and report["settings"]["num_envs_per_process"] == 2
    assert report["total_sps"] == report["train_sps"] == pytest.approx(2 * report["per_process_sps"])
    assert report["settings"]["minibatch_size"] == 16  # 2 envs x 16 steps / 2 minibatches per process
