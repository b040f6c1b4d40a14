"""`duo-ai study`: the whole protocol end to end on the tiny procgen_smoke study (a few minutes).

Agents, the baselines (calibrated once, re-calibrated per weight at evaluation), one PPO
coordinator per weight, paired test evaluations at every weight, and the study report; the study
file's refusals; scripts/coordination_pipeline.sh, the wrapper that maps its flags onto a study file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml
from PIL import Image

from duo_ai.config import config_to_dict, load_config
from duo_ai.coordination.baselines import reselect
from duo_ai.core.checkpoint import load_checkpoint
from duo_ai.study.checks import check_before_any_job
from duo_ai.study.jobs import JobFailed, Pool
from duo_ai.study.plan import Plan
from duo_ai.study.protocol import Protocol
from duo_ai.study.schema import AgentSpec, Method, Study, load_study
from tests.conftest import assert_user_error, cli

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "COLUMNS": "120"}


def shell(*args: object) -> subprocess.CompletedProcess:
    """ARGS... from the project's folder with this environment's duo-ai, checked to succeed."""
    done = subprocess.run([*map(str, args)], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def study(*args: object) -> subprocess.CompletedProcess:
    """`duo-ai study ARGS...` in a subprocess (its trainings write to the real output)."""
    return shell(sys.executable, "-m", "duo_ai_cli", "study", *args)


@pytest.mark.slow(seconds=150)
def test_smoke_study_runs_the_whole_protocol(tmp_path):
    out = tmp_path / "study"
    # The study's weight 0.5 lies off the AUC's grid (0, 1): it gets its own coordinator and evaluation.
    # Written "0.50", it is still weight 0.5: one run folder and one evaluation file per weight.
    smoke = ("procgen_smoke", "--out", out, "game=starpilot", "evaluation.auc_episodes=2",
             "coordination.agent_temperature=0", "weight=0.50", "evaluation.confirm_seed=3")  # fmt: skip
    done = study(*smoke, "--jobs", "2")
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
    table = json.loads((out / "table.json").read_text())  # the confirmation's table, plus the study's setting
    setting = (table.pop("setting"), table.pop("train_env"), table.pop("selection_split"))
    assert setting == ("skyline", "starpilot", "val_true")
    assert table == json.loads((out / "report_confirm_seed3" / "table.json").read_text())
    assert "the study's table: " in done.stdout and "wall-clock: " in done.stdout
    # OUT/study.yaml: the study as it ran, every layer and override applied; it reruns as it is.
    ran = load_study(str(out / "study.yaml"))
    assert ran == load_study("procgen_smoke", [f"out={out}", *smoke[3:], "jobs=2"])
    assert ran.game == "starpilot" and ran.weight == 0.5 and ran.evaluation.confirm_seed == 3

    # collect_study.sh: what to commit; every checkpoint the report names is there, without agents.
    kept = tmp_path / "results"
    shell("bash", "scripts/collect_study.sh", out, kept)
    for name, row in table["methods"].items():
        checkpoint = kept / row["checkpoint"]
        assert checkpoint.is_file() and checkpoint.stat().st_size < 100_000, name
    assert (kept / "report" / "table.json").read_text() == (out / "report" / "table.json").read_text()
    assert (kept / "table.json").read_text() == (out / "table.json").read_text()
    assert (kept / "novice" / "config.yaml").is_file() and not (kept / "novice" / "last.ckpt").exists()

    # A rerun reuses what finished and resumes a run that has a last.ckpt but no summary.json
    # (here a finished one, so the resume has nothing left to train).
    (out / "ppo_w1" / "summary.json").unlink()
    again = study(*smoke)
    assert f"resuming {out}/ppo_w1 from its last.ckpt" in again.stdout
    assert "already finished at step 128" in " ".join((again.stdout + again.stderr).split())  # wrapped lines
    assert f"reusing {out}/ppo_w0" in again.stdout
    # The rerun's study.yaml (jobs 1) replaced the first one's, which is kept beside it.
    assert yaml.safe_load((out / "study.yaml").read_text())["jobs"] == 1
    assert [yaml.safe_load(p.read_text())["jobs"] for p in out.glob("study_*.yaml")] == [2]

    # The study folder moved elsewhere is still the same study: everything in it may be reused.
    moved = tmp_path / "moved"
    shutil.copytree(out, moved, symlinks=True)
    check_before_any_job(Plan(load_study("procgen_smoke", [*smoke[3:], f"out={moved}"])))

    # A rerun that would mix runs or evaluations made otherwise is refused before any work.
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    rerun = ["study", *smoke]
    assert_user_error(cli(*rerun, "evaluation.episodes=6"), "holds num_episodes=4", "asks for num_episodes=6")
    assert_user_error(
        cli(*rerun, "ppo.overrides=[algorithm.learning_rate=0.001]"), "/ppo_w", "was made with algorithm."
    )
    assert_user_error(cli(*rerun, "agents.novice.steps=256"), "novice was made with algorithm.total_timesteps=")
    (out / "novice" / "last.ckpt").unlink()  # a hard link to its rolling checkpoint: replaced, not written into
    shutil.copy(out / "expert" / "last.ckpt", out / "novice" / "last.ckpt")  # another novice between two runs
    assert_user_error(cli(*rerun), "was trained with another train_novice than", "weights differ")
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "last.ckpt"} == {
        p: t for p, t in before.items() if p.name != "last.ckpt"
    }


@pytest.mark.slow  # trains the smoke study's two agents and evaluates them
def test_the_wrapper_maps_its_flags_and_stops_after_the_gate(tmp_path):
    """scripts/coordination_pipeline.sh --smoke ... is `duo-ai study procgen_smoke` with its flags as keys."""
    out = tmp_path / "study"
    gate = ("--smoke", "--out", out, "--gate-only", "--jobs", "2", "--episodes", "3", "--weights", "0.3")
    gate += ("--game", "starpilot")  # short episodes for agents that have not learned
    done = shell("bash", "scripts/coordination_pipeline.sh", *gate)
    assert "gate (novice, expert): novice " in done.stdout and "break even at cost weight " in done.stdout
    assert "stopped after the gate (--gate-only)" in done.stdout
    for method in ("always_novice", "always_expert"):
        assert json.loads((out / "evals" / method / "w0.json").read_text())["num_episodes"] == 3
    assert not list(out.glob("ppo_w*")) and not (out / "random").exists() and not (out / "logit").exists()
    ran = yaml.safe_load((out / "study.yaml").read_text())  # a single --weights is the study's weight
    assert ran["weights"] == [0.3] and ran["weight"] == 0.3 and ran["jobs"] == 2 and ran["game"] == "starpilot"
    # A rerun reuses the evaluation, and its job log is appended to, not replaced.
    shell("bash", "scripts/coordination_pipeline.sh", *gate)
    log = (out / "logs" / "eval_always_novice.log").read_text()
    assert "evaluated always_novice at weight 0 on 3 episodes" in log
    assert f"reusing {out}/evals/always_novice/w0.json" in log
    bad = subprocess.run(["bash", "scripts/coordination_pipeline.sh", "--bogus"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 2 and "unknown argument --bogus" in bad.stderr
    bare = subprocess.run(["bash", "scripts/coordination_pipeline.sh", "--smoke", "--game"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert bare.returncode == 2 and bare.stderr.strip() == "coordination_pipeline: --game needs a value (see --help)"


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--jobs", "0"], ["jobs=0", ">= 1"]),
        (["--jobs", "two"], ["'jobs'", "'two'"]),
        (["evaluation.auc_episodes=x"], ["evaluation.auc_episodes", "'x'"]),
        (["evaluation.auc_episodes=0"], ["evaluation.auc_episodes=0", "[1, 1000000]"]),
        (["evaluation.episodes=-4"], ["evaluation.episodes=-4", "[1, 1000000]"]),
        (["evaluation.confirm_episodes=-5"], ["evaluation.confirm_episodes=-5", "[0, 1000000]"]),
        (["evaluation.confirm_seed=1"], ["evaluation.confirm_seed must differ from evaluation.seed=1"]),
        (["bogus=1"], ["unknown study key 'bogus'"]),
        (["agents.novice.stepz=5"], ["unknown study key 'agents.novice.stepz'"]),
        (["weights=[0.2,high]"], ["weights[1]", "'high'"]),
        (["weights=[0,0.50,0.5]"], ["weights lists a weight twice"]),
        (["weights=[0,0.50]", "weight=0.40"], ["the study's weight 0.4 is not among the cost weights (0 0.5)"]),
        (["weight=heavy"], ["'weight'", "'heavy'"]),
        (["sanity_weights=[-2]"], ["sanity_weights"]),
        (["coordination.agent_temperature=-1"], ["coordination.agent_temperature=-1", ">= 0"]),
        (["ppo.start=warm"], ["ppo.start='warm'", "random, uniform"]),
        (["ppo.start=random", "baselines=[always_novice,always_expert,logit]"], ["baselines has no 'random'"]),
        (["baselines=[always_novice,always_expert,random,knn]"], ["baselines names 'knn'", "define methods.knn"]),
        (["baselines=[always_novice,random]"], ["must include always_novice and always_expert"]),
        (["baselines=[always_novice,always_expert,random,random]"], ["names a method twice"]),
        (["methods.ppo_w3.config=configs/procgen_random.yaml"], ["methods.ppo_w3"]),
        (["methods.ppo_s2.config=configs/procgen_random.yaml"], ["methods.ppo_s2"]),
        (["ppo.seeds=[1,2,1]"], ["ppo.seeds lists a seed twice"]),
        (["ppo.seeds=[]"], ["ppo.seeds"]),
        (["methods.logit.config=configs/nope.yaml"], ["methods.logit.config", "configs/nope.yaml", "not found"]),
        (["ppo.config=configs/nope.yaml"], ["ppo.config", "not found"]),
        (["agents.expert.checkpoint=nope/last.ckpt"], ["agents.expert.checkpoint nope/last.ckpt not found"]),
        (["calibration=[algorithm.num_episodes]"], ["calibration", "key=value"]),
        (["ppo.overrides=[algorithm.bogus=1]"], ["run ppo_w1", "algorithm.bogus"]),
        (["methods.random.grid=[policy.candidates=2]"], ["run random", "policy.candidates"]),
        (["compute.precision=fp8"], ["compute.precision='fp8'"]),
        # Every evaluation job's settings, every given checkpoint and every run's model, before the first job.
        (["evaluation.episodes=2000000"], ["evaluation.episodes=2000000", "[1, 1000000]"]),
        (["agents.overrides=[env.num_envs=100000,algorithm.num_steps=4096]"], ["run novice", "GiB of memory"]),
        (["evaluation.seed=99999999999999"], ["evaluation.seed=99999999999999", "2**31-1"]),
        (["agents.novice.config=procgen_ppo"], ["run novice (procgen_ppo)", "is a coordinator's"]),
        (
            [f"agents.novice.checkpoint={ROOT}/results/minigrid_distshift/random/last.ckpt"],
            ["a coordinator checkpoint"],
        ),
        (
            [f"agents.novice.checkpoint={ROOT}/results/minigrid_distshift/ood/last.ckpt", "game=starpilot"],
            ["a coordinator checkpoint"],
        ),  # fmt: skip
        (
            ["coordination.overrides=[train_expert=/etc/passwd]"],
            ["train_expert: /etc/passwd is not a duo-ai checkpoint"],
        ),
    ],
)
def test_a_bad_study_is_refused_in_one_line_before_any_work(tmp_path, args, fragments):
    out = tmp_path / "study"
    assert_user_error(cli("study", "procgen_smoke", "--out", out, *args), *fragments)
    assert not out.exists()


def test_an_agent_of_another_game_is_refused_before_any_work(tmp_path, tiny_run):
    out = tmp_path / "study"
    result = cli("study", "procgen_smoke", "--out", out, f"agents.expert.checkpoint={tiny_run}/last.ckpt")
    assert_user_error(result, "trained on procgen/starpilot, but the study plays procgen/coinrun")
    assert not out.exists()


def test_a_study_file_is_found_by_name_or_path_and_layers_on_its_base(tmp_path):
    smoke = load_study("procgen_smoke")
    assert smoke == load_study(str(ROOT / "configs" / "studies" / "procgen_smoke.yaml"))
    # From procgen_base: the gate's methods and the expert on hard levels; from procgen_smoke: the sizes.
    assert smoke.methods["logit"].overrides == ["policy.score=max_prob"]
    assert smoke.methods["logit"].grid == ["policy.percentiles=[0,100]"]
    assert "env.distribution_mode=hard" in smoke.agents.expert.overrides and smoke.agents.expert.steps == 256
    mine = tmp_path / "mine.yaml"  # a study elsewhere builds on one in configs/studies by its path
    mine.write_text(f"defaults: [{ROOT / 'configs' / 'studies' / 'procgen_smoke.yaml'}]\nweights: [0, 0.5, 1]\n")
    assert load_study(str(mine), ["evaluation.episodes=6"]).weights == [0, 0.5, 1]
    assert_user_error(cli("study", "procgen_nope"), "study file procgen_nope not found", "procgen_smoke")


def test_the_base_study_file_spells_out_every_key():
    """configs/studies/procgen_base.yaml is where a reader finds every knob a study has, with its reason."""
    base = yaml.safe_load((ROOT / "configs" / "studies" / "procgen_base.yaml").read_text())

    def missing(cls: type, data: dict) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.name not in data]

    assert missing(Study, base) == []
    for name, cls in typing.get_type_hints(Study).items():
        if dataclasses.is_dataclass(cls):
            assert missing(cls, base[name]) == [], name
    for role in ("novice", "expert", "sim_novice"):
        assert missing(AgentSpec, base["agents"][role]) == [], role
    for name, method in base["methods"].items():
        assert missing(Method, method) == [], name


def flat(data: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    out = {}
    for key, value in data.items():
        out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value})
    return out


def test_procgen_small_trains_the_committed_study_runs_as_they_were(tmp_path):
    """Each run procgen_small would train has the config of the committed run of the same name, but for
    where its agents were (given by path then), base_penalty (measured by the run) and PPO's start (from
    random's calibration); the baselines ran before procgen_small pinned precision to fp32."""
    committed = ROOT / "results" / "coordination_coinrun_t0.3_n24k"
    study = load_study("procgen_small", ["weight=0.56", "out=experiments/coordination_n24k"])  # as it ran
    protocol = Protocol(study, Pool(1, tmp_path))
    runs = [*map(protocol.baseline_run, protocol.study.baselines)]
    runs += [protocol.ppo_run(w, ["policy.model.expert_prob_init=0.5"], 1) for w in protocol.study.ppo_weights]
    for name, config, overrides in runs:
        mine = flat(
            config_to_dict(load_config(config, [f"name={name}", "overwrite=true", *protocol.common, *overrides]))
        )
        theirs = flat(yaml.safe_load((committed / name / "config.yaml").read_text()))
        ignored = {"train_novice", "train_expert", "coordination.base_penalty", "policy.model.expert_prob_init"}
        ignored |= set() if name.startswith("ppo_w") else {"precision"}
        differ = {key for key in {*mine, *theirs} - ignored if mine.get(key) != theirs.get(key)}
        assert not differ, (name, {key: (mine.get(key), theirs.get(key)) for key in differ})


def test_a_failed_job_stops_the_study_naming_its_log(tmp_path):
    """--jobs N: a job that fails ends the pool with its log's path (here an eval of a missing checkpoint)."""
    with pytest.raises(JobFailed, match=r"eval_x failed .*exited with code 2.*see its log .*eval_x\.log"):
        with Pool(2, tmp_path / "logs") as pool:
            pool.spawn("eval_x", lambda out: out.run(["eval", "--checkpoint", str(tmp_path / "none.ckpt")]))
            pool.join()
    assert "not found" in (tmp_path / "logs" / "eval_x.log").read_text()


@pytest.mark.slow(seconds=25)
def test_sigterm_ends_a_study_with_143_and_releases_its_folder(tmp_path):
    """Like `duo-ai train`, a study stopped by SIGTERM (a scheduler's stop) exits 128 + 15, not Ctrl-C's 130."""
    import signal
    import time

    out = tmp_path / "out"
    command = [sys.executable, "-m", "duo_ai_cli", "study", "minigrid_smoke", "--out", str(out)]
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "study.yaml").exists():  # the protocol has started
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert "terminated" in stderr and "Traceback" not in stderr
    assert not (out / "study.lock").exists()
