"""The CUDA path: pinned rollout staging, bf16 or fp16 with a gradient scaler, NCCL between GPUs.

These tests need a CUDA GPU (two for the NCCL one) and are skipped where there is none; the same
code paths without CUDA are covered by the rest of the suite. fp16 is refused off CUDA everywhere.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from duo_ai.config import load_config
from duo_ai.core.checkpoint import load_checkpoint
from duo_ai.training import Trainer
from tests.conftest import TINY, cli

cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA-only: needs a CUDA GPU")
ROOT = Path(__file__).resolve().parents[1]


def finite(run: Path) -> bool:
    weights = load_checkpoint(run / "last.ckpt")["model_state_dict"]
    return all(torch.isfinite(w.float()).all() for w in weights.values())


@cuda_only
def test_a_run_on_cuda_stages_the_rollout_in_pinned_memory_and_trains(tmp_path):
    config = load_config(overrides=[*TINY, "device=cuda", f"experiments_dir={tmp_path}", "name=cuda"])
    with Trainer(config, show_progress=False) as trainer:
        algo = trainer.parts.algorithm
        assert algo.compute.device.type == "cuda"
        assert algo.compute.precision == ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
        assert algo.rollout.obs.staging and all(
            t.is_pinned() for slot in algo.rollout.obs.staging for t in slot.values()
        )
        assert algo.rollout.host_step.is_pinned()
        summary = trainer.run()
    assert summary["global_step"] == 256 and finite(tmp_path / "cuda")
    assert math.isfinite(summary["eval"]["test"]["reward_mean"])


@cuda_only
def test_fp16_with_a_gradient_scaler_trains_and_resumes(tmp_path):
    run = tmp_path / "fp16"
    result = cli("train", *TINY, "device=cuda", "precision=fp16", f"experiments_dir={tmp_path}", "name=fp16")
    assert result.exit_code == 0, result.output
    checkpoint = load_checkpoint(run / "last.ckpt")
    assert checkpoint["grad_scaler"]["scale"] > 0 and finite(run)
    result = cli("train", "--resume", run, "algorithm.total_timesteps=384")
    assert result.exit_code == 0, result.output
    assert load_checkpoint(run / "last.ckpt")["global_step"] == 384 and finite(run)


def test_fp16_is_refused_on_the_cpu(tmp_path):
    result = cli("train", *TINY, "device=cpu", "precision=fp16", f"experiments_dir={tmp_path}")
    assert result.exit_code == 2 and "fp16" in result.output


@cuda_only
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL data parallelism needs two GPUs")
def test_two_gpus_keep_identical_weights_over_nccl(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    done = subprocess.run([*cmd, "tests/dp_helper.py", str(tmp_path), "device=auto"], cwd=ROOT, capture_output=True)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["trained"] == ranks[1]["trained"] != ranks[0]["initial"]
    grads = [torch.load(tmp_path / f"grads_rank{r}.pt") for r in range(2)]
    one = torch.load(tmp_path / "grads_one_process.pt")
    for name in one:
        torch.testing.assert_close(grads[0][name].cpu(), one[name].cpu(), rtol=1e-3, atol=1e-5, msg=name)
