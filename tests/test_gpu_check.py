"""`scripts/gpu_check.sh` where there is no GPU, and its summary writer on a real CPU bench's report.

The GPU steps themselves run only on a GPU box (docs/gpu.md); here: the no-GPU exit (code 3, one
line, nothing written), bad arguments (code 2), and `scripts/gpu_check.py` reading what the
steps leave behind, including a real `duo-ai bench --json`.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from duo_ai.core.checkpoint import save_checkpoint
from tests.conftest import cli

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
SUMMARY = ROOT / "scripts" / "gpu_check.py"
# The script's summary writer, loaded from its file: it is no module of the package.
_spec = importlib.util.spec_from_file_location("gpu_check", SUMMARY)
gpu_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_check)
main = gpu_check.main


def test_the_summary_writer_ships_with_the_script_not_the_package():
    assert importlib.util.find_spec("duo_ai.gpu_check") is None
    assert "scripts/gpu_check.py summary" in SCRIPT.read_text()


def has_gpu() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return listed.returncode == 0 and "GPU" in listed.stdout


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(has_gpu(), reason="this machine has a GPU: the script would run the whole check")
def test_without_a_gpu_it_says_so_in_one_line_and_exits_3(tmp_path):
    out = tmp_path / "bench_gpu"
    done = run_script("--out", str(out))
    assert done.returncode == 3
    assert done.stderr.splitlines() == [
        "gpu_check: no NVIDIA GPU on this machine (nvidia-smi lists none); nothing to check"
    ]
    assert done.stdout == "" and not out.exists()  # nothing set up, nothing written


def test_bad_arguments_exit_2_in_one_line(tmp_path):
    for args, fragment in (((), "--out DIR is required"), (("--out", str(tmp_path), "--fast"), "'--fast'")):
        done = run_script(*args)
        assert done.returncode == 2 and done.stdout == ""
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], done.stderr


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0" failures="1"
 skipped="1" tests="4"></testsuite></testsuites>"""


def test_the_summary_of_a_real_cpu_bench_is_written_as_json_and_markdown(tmp_path):
    out = tmp_path / "bench_gpu"
    out.mkdir()
    small = ["--num-envs", "4", "--num-steps", "16", "--num-minibatches", "2", "--epochs", "1", "--iterations", "1"]
    result = cli("bench", *small, "--no-baseline", "--json", out / "bench_bf16.json", "num_threads=1")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "bench_bf16.json").read_text())
    assert report["peak_gpu_memory_mb"] is None and report["gpu_memory_reserved_mb"] is None  # no CUDA here
    steps = [
        {"step": "setup", "status": "ok", "seconds": 41.5, "log": "logs/setup.log"},
        {"step": "cuda_tests", "status": "failed", "seconds": 20.0, "log": "logs/cuda_tests.log"},
        {"step": "bench_bf16", "status": "ok", "seconds": 9.5, "log": "logs/bench_bf16.log"},
        {"step": "bench_fp32", "status": "timeout", "seconds": 240.0, "log": "logs/bench_fp32.log"},
        {"step": "ddp", "status": "skipped", "seconds": 0, "note": "needs 2 GPUs"},
    ]
    (out / "steps.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
    (out / "cuda_tests.xml").write_text(JUNIT)

    assert main(["summary", "--out", str(out)]) == 1  # a step failed

    summary = json.loads((out / "summary.json").read_text())
    assert not summary["ok"] and summary["total_seconds"] == pytest.approx(311.0)
    assert [(s["step"], s["status"]) for s in summary["steps"]] == [(s["step"], s["status"]) for s in steps]
    bf16 = summary["bench"]["bf16"]
    assert bf16["train_sps"] == report["train_sps"] and bf16["env_sps"] == report["env_sps"]
    assert bf16["bound_sps"] == report["bound_sps"] and bf16["loop_efficiency"] == report["loop_efficiency"]
    assert bf16["inference_ms_per_step"] == report["bound"]["inference_ms_per_step"]
    assert bf16["settings"]["num_envs"] == 4 and summary["bench"]["fp32"] is None  # the timed-out step wrote none
    assert summary["steps"][1]["detail"] == {"passed": 2, "failed": 1, "skipped": 1}

    md = (out / "summary.md").read_text()
    assert md.startswith("# duo-ai GPU check: a step failed")
    assert "| setup | ok | 41.5 |" in md and "| bench_fp32 | timeout | 240.0 | see logs/bench_fp32.log |" in md
    assert "| cuda_tests | failed | 20.0 | 2 passed, 1 failed, 1 skipped |" in md
    assert f"| training loop (SPS) | {report['train_sps']:,.0f} | - |" in md
    assert "| peak GPU memory allocated (MB) | - | - |" in md and "| total | | 311.0 | |" in md

    # Every step passed (or was skipped): exit 0. Run as the shell script runs it, and with no
    # site-packages (-S: neither torch nor duo-ai), as it must run when setting up failed.
    (out / "steps.jsonl").write_text(json.dumps(steps[0]) + "\n" + json.dumps(steps[-1]) + "\n")
    done = subprocess.run(
        [sys.executable, "-S", str(SUMMARY), "summary", "--out", str(out)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("# duo-ai GPU check: every step passed")
    assert json.loads((out / "summary.json").read_text())["ok"]


def test_compare_tells_identical_weights_from_different_ones(tmp_path):
    weights = {"w": torch.arange(6, dtype=torch.float32).view(2, 3), "b": torch.zeros(3)}
    save_checkpoint(tmp_path / "a.ckpt", {"model_state_dict": weights})
    save_checkpoint(tmp_path / "b.ckpt", {"model_state_dict": {k: v.clone() for k, v in weights.items()}})
    save_checkpoint(tmp_path / "c.ckpt", {"model_state_dict": {**weights, "b": torch.tensor([0.0, 0.5, 0.0])}})

    def compare(a: str, b: str) -> tuple[int, dict]:
        code = main(["compare", str(tmp_path / a), str(tmp_path / b), "--json", str(tmp_path / "found.json")])
        return code, json.loads((tmp_path / "found.json").read_text())

    code, found = compare("a.ckpt", "b.ckpt")
    assert code == 0 and found["identical"] and found["max_abs_diff"] == 0.0
    code, found = compare("a.ckpt", "c.ckpt")
    assert code == 1
    assert (found["identical"], found["tensors_differ"], found["max_abs_diff"]) == (False, 1, 0.5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the answer where torch has no CUDA")
def test_machine_without_cuda_exits_1(tmp_path):
    assert main(["machine", "--json", str(tmp_path / "m.json")]) == 1
    found = json.loads((tmp_path / "m.json").read_text())
    assert found["cuda_available"] is False and found["gpus"] == [] and found["torch"] == torch.__version__
