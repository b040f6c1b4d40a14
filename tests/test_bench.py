"""`duo-ai bench` in its small mode: a real (tiny) coinrun workload, every report field present and sane.

Speeds are reported by the bench, never asserted here: only that they are positive and finite, and
that each is the steps it counts over the time it measured.
"""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from duo_ai.bench import Workload, bench_config
from duo_ai.core.errors import ConfigError
from duo_ai_cli.main import app

SMALL = ["--num-envs", "4", "--num-steps", "16", "--num-minibatches", "2", "--epochs", "1", "--iterations", "1"]
FIELDS = (
    "env_sps",
    "train_sps",
    "baseline_sps",
    "speedup_vs_baseline",
    "bound_sps",
    "loop_efficiency",
    "peak_rss_mb",
)


def test_bench_small_mode_writes_every_field(tmp_path):
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", *SMALL, "--json", str(out), "num_threads=1"])
    assert result.exit_code == 0, result.output
    assert "training loop (SPS)" in result.output
    report = json.loads(out.read_text())
    for field in FIELDS:
        assert isinstance(report[field], float) and math.isfinite(report[field]) and report[field] > 0, field
    assert report["loop_efficiency"] == pytest.approx(report["train_sps"] / report["bound_sps"])
    assert report["speedup_vs_baseline"] == pytest.approx(report["train_sps"] / report["baseline_sps"])
    # The loop does the bound's work plus env stepping; above 1 only by timing noise.
    assert report["loop_efficiency"] < 1.5
    assert report["peak_rss_mb"] < 8000

    s = report["settings"]
    workload = (s["game"], s["num_envs"], s["num_steps"], s["num_minibatches"], s["update_epochs"])
    assert workload == ("coinrun", 4, 16, 2, 1)
    assert s["batch_size"] == 64 and s["minibatch_size"] == 32
    assert s["precision"] in ("bf16", "fp32") and s["num_threads"] == 1 and s["compile"] is False
    assert report["baseline_settings"]["precision"] == "fp32" and report["baseline_settings"]["compile"] is False
    # uint8 frames: 16 steps x 4 envs x 3x64x64 bytes.
    assert report["rollout_storage_mb"] == pytest.approx(16 * 4 * 3 * 64 * 64 / 1e6)

    # Each speed is the steps of its workload over the seconds it reports: 64 steps an iteration.
    for loop in (report["loop"], report["baseline_loop"]):
        assert loop["sps"] == pytest.approx(64 / loop["seconds_per_iteration"])
        assert loop["per_process_sps"] == loop["sps"]  # one process
        # The rollout and the update are timed inside the iteration, which also holds the rest.
        assert (
            loop["rollout_seconds_per_iteration"] + loop["update_seconds_per_iteration"]
            <= loop["seconds_per_iteration"]
        )
    assert report["train_sps"] == report["loop"]["sps"] and report["baseline_sps"] == report["baseline_loop"]["sps"]
    bound = report["bound"]
    # The bound: 16 inference calls (one per rollout step) plus the update, for the same 64 steps.
    inference = 16 * bound["inference_ms_per_step"] / 1000
    assert bound["bound_seconds_per_iteration"] == pytest.approx(inference + bound["update_seconds_per_iteration"])
    assert report["bound_sps"] == pytest.approx(64 / bound["bound_seconds_per_iteration"])


def test_bench_rejects_a_bad_workload():
    with pytest.raises(ConfigError, match="not divisible"):
        bench_config(Workload(num_envs=3, num_steps=5, num_minibatches=2))
    result = CliRunner().invoke(app, ["bench", *SMALL[:-1], "0"])
    assert result.exit_code == 2 and "--iterations" in result.output
