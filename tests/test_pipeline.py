"""scripts/coordination_pipeline.sh --smoke: the whole protocol end to end, tiny (about a minute).

Agents, the baselines (calibrated once, re-calibrated per weight at evaluation), one PPO
coordinator per weight, paired test evaluations at every weight, and the study report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from duo_ai.coordination.baselines import reselect
from duo_ai.core.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def run_script(script: str, *args: object) -> subprocess.CompletedProcess:
    """`bash scripts/<script> ARGS...` with this environment's duo-ai, checked to succeed."""
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "COLUMNS": "120"}
    done = subprocess.run(
        ["bash", f"scripts/{script}", *map(str, args)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_smoke_pipeline_runs_the_whole_protocol(tmp_path):
    out = tmp_path / "study"
    # The study's weight 0.5 lies off the AUC's grid (0, 1): it gets its own coordinator and evaluation.
    # Written "0.50", it is still weight 0.5: one run folder and one evaluation file per weight.
    smoke = ("--smoke", "--game", "starpilot", "--out", out, "--auc-episodes", "2", "--agent-temperature", "0",
             "--weight", "0.50", "--confirm-seed", "3")  # fmt: skip
    done = run_script("coordination_pipeline.sh", *smoke, "--jobs", "2")
    for method in ("always_novice", "always_expert", "random", "logit"):
        assert (out / method / "last.ckpt").is_file(), method
    for w in (0, 0.5, 1, 2):  # one PPO coordinator per weight, and the sanity check's at weight 2
        assert (out / f"ppo_w{w}" / "last.ckpt").is_file(), w
    assert sorted(path.name for path in out.glob("ppo_w*")) == ["ppo_w0", "ppo_w0.5", "ppo_w1", "ppo_w2"]
    for w in (0, 2):
        assert f"sanity: PPO at weight {w} asks the expert on " in done.stdout
    assert (out / "logs" / "eval_ppo_w0.5.log").is_file()  # --jobs 2: each background job's own log
    for run in ("always_novice", "logit", "ppo_w1"):  # --agent-temperature reaches every coordinator
        assert "agent_temperature: 0.0" in (out / run / "config.yaml").read_text(), run
    # --smoke trains PPO as --small does: standardised novice features (fitted in training), GAE lambda 1.
    ppo_config = yaml.safe_load((out / "ppo_w1" / "config.yaml").read_text())
    assert ppo_config["policy"]["model"]["normalize_features"] is True and ppo_config["algorithm"]["gae_lambda"] == 1
    assert load_checkpoint(out / "ppo_w1" / "last.ckpt")["model_state_dict"]["standardizers.hidden.fitted"] == 1
    # --smoke starts each PPO coordinator at random's calibrated rate at its weight, within [0.001, 0.999].
    random = load_checkpoint(out / "random" / "last.ckpt")
    cost = random["config"]["coordination"]
    for w in (0, 0.5, 1, 2):
        p = reselect(random["calibration"], w, cost["base_penalty"], cost["switch_agent_cost_weight"])
        start = yaml.safe_load((out / f"ppo_w{w}" / "config.yaml").read_text())["policy"]["model"]["expert_prob_init"]
        assert start == min(max(p, 0.001), 0.999) and 0.001 <= start <= 0.999, w
        assert f"PPO at weight {w} starts at random's rate: policy.model.expert_prob_init={start:g}" in done.stdout

    table = json.loads((out / "report" / "table.json").read_text())
    assert table["cost_weight"] == 0.5 and table["split"] == "test"
    methods = table["methods"]
    assert set(methods) == {"always_novice", "always_expert", "random", "logit", "ppo"}
    for name, row in methods.items():
        for key in ("checkpoint", "reward_mean", "reward_ci95", "expert_fraction", "num_episodes"):
            assert key in row, (name, key)
        assert (out / row["checkpoint"]).is_file(), row["checkpoint"]  # relative to the study folder
        assert row["num_episodes"] == 4
    assert methods["always_novice"]["expert_fraction"] == 0 and methods["always_expert"]["expert_fraction"] == 1
    assert table["weights"] == [0.5] and table["methods"]["ppo"]["auc"] is None  # the study's weight alone

    # --auc-episodes 2: every weight on 2 paired episodes, for the AUC.
    auc = json.loads((out / "report_auc" / "table.json").read_text())
    assert auc["weights"] == [0, 1] and auc["num_episodes"] == 2 and set(auc["methods"]) == set(methods)
    assert auc["cost_weight"] == 1  # the grid weight nearest to 0.5 (the upper one on a tie)
    novice = [w["reward_mean"] for w in auc["per_weight"]["always_novice"]]
    assert novice[0] == novice[-1]  # never asks: the same reward at every weight
    assert all(m["auc"] is not None for m in auc["methods"].values())
    for report in ("report", "report_auc"):
        with Image.open(out / report / "reward_vs_cost.png") as image:
            assert image.size[0] > 500 and image.size[1] > 300

    # The confirmation: every method again at the study's weight on fresh episodes (seed 3, 2 by
    # --smoke's default); its table is the study's table.json, where a script looks for it.
    confirm = json.loads((out / "report_confirm_seed3" / "table.json").read_text())
    assert confirm["evals"] == "evals_confirm_seed3" and confirm["num_episodes"] == 2 and confirm["cost_weight"] == 0.5
    assert set(confirm["methods"]) == set(methods)
    ppo_confirm = json.loads((out / "evals_confirm_seed3" / "ppo" / "w0.5.json").read_text())
    assert ppo_confirm["seed"] == 3 and json.loads((out / "evals" / "ppo" / "w0.5.json").read_text())["seed"] == 1
    assert (out / "table.json").read_text() == (out / "report_confirm_seed3" / "table.json").read_text()
    assert "the study's table: " in done.stdout

    # collect_study.sh: what to commit; every checkpoint the report names is there, without agents.
    kept = tmp_path / "results"
    run_script("collect_study.sh", out, kept)
    for name, row in table["methods"].items():
        checkpoint = kept / row["checkpoint"]
        assert checkpoint.is_file() and checkpoint.stat().st_size < 100_000, name
    assert (kept / "report" / "table.json").read_text() == (out / "report" / "table.json").read_text()
    assert (kept / "table.json").read_text() == (out / "table.json").read_text()
    assert (kept / "novice" / "config.yaml").is_file() and not (kept / "novice" / "last.ckpt").exists()

    # A rerun reuses what finished and resumes a run that has a last.ckpt but no summary.json
    # (here a finished one, so the resume has nothing left to train).
    (out / "ppo_w1" / "summary.json").unlink()
    again = run_script("coordination_pipeline.sh", *smoke)
    assert f"resuming {out}/ppo_w1 from its last.ckpt" in again.stdout
    assert "already finished at step 128" in " ".join((again.stdout + again.stderr).split())  # wrapped lines
    assert f"reusing {out}/ppo_w0" in again.stdout


@pytest.mark.slow
def test_gate_only_stops_after_the_gate_before_any_coordinator(tmp_path):
    out = tmp_path / "study"
    gate = ("--smoke", "--out", out, "--gate-only", "--jobs", "2")
    done = run_script("coordination_pipeline.sh", *gate)
    assert "gate: novice " in done.stdout and "break even at cost weight " in done.stdout
    assert "stopped after the gate (--gate-only)" in done.stdout
    for method in ("always_novice", "always_expert"):
        assert json.loads((out / "evals" / method / "w0.json").read_text())["num_episodes"] == 4
    assert not list(out.glob("ppo_w*")) and not (out / "random").exists() and not (out / "logit").exists()
    # A rerun reuses the evaluation, and its job log is appended to, not replaced.
    run_script("coordination_pipeline.sh", *gate)
    log = (out / "logs" / "eval_always_novice.log").read_text()
    assert "evaluated always_novice at weight 0 on 4 episodes" in log
    assert f"reusing {out}/evals/always_novice/w0.json" in log


def test_pipeline_refuses_bad_options_in_one_line_before_any_work(tmp_path):
    for args, fragment in (
        (["--jobs", "0"], "--jobs must be a whole number >= 1"),
        (["--auc-episodes", "x"], "--auc-episodes must be a whole number >= 1"),
        (["--bogus"], "unknown argument"),
        (["--weights", "0.2,high"], "--weights takes comma-separated numbers >= 0"),
        (["--weights", "0,0.50", "--weight", "0.40"], "the study's weight 0.4 is not among the cost weights (0 0.5)"),
        (["--weight", "heavy"], "--weight takes a number >= 0"),
        (["--agent-temperature", "-1"], "--agent-temperature takes a number >= 0"),
        (["--ppo-start", "warm"], "--ppo-start must be random or uniform, got 'warm'"),
        (["--confirm-episodes", "-5"], "--confirm-episodes must be a whole number >= 0"),
        (["--confirm-seed", "1"], "--confirm-seed must be a whole number other than 1"),
    ):
        done = subprocess.run(
            ["bash", "scripts/coordination_pipeline.sh", "--smoke", "--out", str(tmp_path / "x"), *args],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 2 and fragment in done.stderr and len(done.stderr.splitlines()) == 1
        assert not (tmp_path / "x").exists()
