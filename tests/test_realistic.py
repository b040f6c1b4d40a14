"""The benchmark's realistic setting: coordinators built on the train environment with a simulated
pair, the test environment played only by the final evaluations (checked by tracing every env that
every job of a real study builds), and the study file's refusals."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from duo_ai.core.checkpoint import load_checkpoint
from tests.conftest import assert_user_error, cli

ROOT = Path(__file__).resolve().parents[1]
DS1, DS2 = "MiniGrid-DistShift1-v0", "MiniGrid-DistShift2-v0"
# Loaded by every Python process of the study (PYTHONPATH): each MiniGrid env built is one line,
# time, task and the command that built it.
TRACE = """
import os, sys, time

def _trace():
    from duo_ai.envs import minigrid

    built = minigrid.MiniGridVecEnv.__init__

    def traced(self, task, *args, **kwargs):
        with open(os.environ["DUO_AI_ENV_TRACE"], "a") as f:
            f.write(f"{time.time()}\\t{task}\\t{' '.join(sys.argv[1:])}\\n")
        built(self, task, *args, **kwargs)

    minigrid.MiniGridVecEnv.__init__ = traced

if os.environ.get("DUO_AI_ENV_TRACE"):
    _trace()
"""


@pytest.mark.slow(seconds=90)
def test_a_realistic_study_plays_the_test_environment_only_in_its_final_evaluations(tmp_path, monkeypatch):
    (tmp_path / "trace").mkdir()
    (tmp_path / "trace" / "sitecustomize.py").write_text(TRACE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path / "trace"), str(ROOT)]))
    monkeypatch.setenv("DUO_AI_ENV_TRACE", str(tmp_path / "envs.tsv"))
    out = tmp_path / "study"
    result = cli("study", "minigrid_smoke_realistic", "--out", out, "--jobs", "2")
    assert result.exit_code == 0, result.output
    builds = [line.split("\t") for line in (tmp_path / "envs.tsv").read_text().splitlines()]
    builds = [(float(t), task, command.split()) for t, task, command in builds]
    expert = [b for b in builds if b[2][0] == "train" and "name=expert" in b[2]]
    assert expert and {task for _, task, _ in expert} == {DS2}  # the expert is trained on the test layout
    on_test = [b for b in builds if b[1] == DS2 and b not in expert]
    first = min(t for t, _, _ in on_test)
    # Every coordinator's training and calibration, and every agent but the expert, played DS1 only,
    # all before the first episode on the test layout; from then on only evaluations and maps.
    trainings = [b for b in builds if b[2][0] == "train" and b not in expert]
    assert trainings and {task for _, task, _ in trainings} == {DS1}
    assert max(t for t, _, _ in trainings) < first
    assert {command[0] for _, _, command in on_test} == {"eval", "ask-map"}
    assert "--split" in on_test[0][2] and on_test[0][2][on_test[0][2].index("--split") + 1] == "test"

    table = json.loads((out / "table.json").read_text())
    assert (table["setting"], table["train_env"], table["selection_split"]) == ("realistic", DS1, "val_sim")
    assert table["env"] == DS2 and table["split"] == "test"
    assert set(table["methods"]) == {"always_novice", "always_expert", "random", "ood", "ppo"}
    ppo = load_checkpoint(out / "ppo_w1" / "best_val_sim.ckpt")["config"]
    assert ppo["env"]["task"] == DS1 and ppo["env"]["splits"]["test"]["task"] == DS2
    assert ppo["train_novice"].endswith("sim_novice/last.ckpt") and ppo["train_expert"].endswith("/novice/last.ckpt")
    assert ppo["test_novice"].endswith("/novice/last.ckpt") and ppo["test_expert"].endswith("expert/last.ckpt")
    assert ppo["coordination"]["base_penalty"] == 0.1 and ppo["coordination"]["selection_split"] == "val_sim"
    assert (
        load_checkpoint(out / "sim_novice" / "last.ckpt")["global_step"]
        < load_checkpoint(out / "novice" / "last.ckpt")["global_step"]
    )
    assert json.loads((out / "evals_val_sim" / "always_novice" / "w0.json").read_text())["env"] == DS1


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["setting=sky"], ["setting='sky'", "skyline, realistic"]),
        (["train_game=''"], ["setting realistic", "set train_game"]),
        (["train_game=MiniGrid-DistShift2-v0"], ["train_game and game are both"]),
        (["agents.sim_novice.config=''"], ["agents.sim_novice", "weakened novice"]),
        (["coordination.base_penalty=null"], ["cost unit must be given", "coordination.base_penalty"]),
        (["agents.sim_novice.overrides=[env.task=MiniGrid-DistShift2-v0]"], ["sim_novice is trained on", "the test"]),
        (["suite=procgen", "game=coinrun"], ["setting realistic is built for suite minigrid"]),
        (["agents.novice.overrides=[env.task=MiniGrid-DistShift2-v0]"], ["novice is trained on", "the test"]),
        (["agents.novice.init=expert"], ["agents.novice.init='expert'", "choose from none"]),
        (["agents.expert.init=sim_novice"], ["agents.expert.init='sim_novice'", "choose from novice"]),
    ],
)
def test_a_bad_realistic_study_is_refused_in_one_line_before_any_work(tmp_path, args, fragments):
    out = tmp_path / "study"
    assert_user_error(cli("study", "minigrid_smoke_realistic", "--out", out, *args), *fragments)
    assert not out.exists()


def test_a_realistic_study_refuses_a_sim_novice_trained_on_the_test_environment(tmp_path):
    agent = ["train", "-c", "minigrid_agent", "env.num_envs=2", "algorithm.num_steps=8", "algorithm.num_minibatches=1"]
    agent += ["algorithm.update_epochs=1", "algorithm.total_timesteps=16", "evaluation.num_episodes=0"]
    result = cli(*agent, f"env.task={DS2}", f"experiments_dir={tmp_path}", "name=wrong", "--no-progress")
    assert result.exit_code == 0, result.output
    out = tmp_path / "study"
    given = f"agents.sim_novice.checkpoint={tmp_path / 'wrong' / 'last.ckpt'}"
    assert_user_error(cli("study", "minigrid_smoke_realistic", "--out", out, given), "agents.sim_novice.checkpoint")
    assert not out.exists()


def test_the_shipped_pairs_resolve_and_the_doorkey_expert_starts_from_the_novice(tmp_path):
    from duo_ai.study.checks import check_before_any_job
    from duo_ai.study.jobs import Pool
    from duo_ai.study.protocol import Protocol
    from duo_ai.study.schema import load_study

    for pair in ("distshift", "doorkey", "lavagap", "crossing"):
        for setting in ("skyline", "realistic"):
            study = load_study(f"minigrid_{pair}_{setting}", [f"out={tmp_path / pair / setting}"])
            assert study.coordination.base_penalty is not None  # one fixed cost unit per pair
            assert study.setting == setting and study.train_game != study.game
    study = load_study("minigrid_doorkey_realistic", [f"out={tmp_path / 'dk'}", "coordination.base_penalty=0.02"])
    with Pool(1, tmp_path / "logs") as pool:
        protocol = Protocol(study, pool)
        check_before_any_job(protocol)  # every run's config loads
        runs = {name: overrides for name, _, overrides in protocol.agent_runs()}
    assert f"policy.load_path={tmp_path / 'dk' / 'novice' / 'last.ckpt'}" in runs["expert"]
    assert "env.task=MiniGrid-DoorKey-5x5-v0" in runs["sim_novice"]
    assert not any(o.startswith("policy.load_path") for o in runs["novice"] + runs["sim_novice"])


def test_a_study_holds_its_folder_and_refuses_links_where_it_writes(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "study"
    out.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / "study.lock").write_text(f"{__import__('platform').node()} {sleeper.pid}\n")
        assert_user_error(cli("study", "minigrid_smoke", "--out", out), "in use by process", "another duo-ai study")
    finally:
        sleeper.kill()
        sleeper.wait()
    (out / "study.lock").unlink()
    outside = tmp_path / "outside.json"
    outside.write_text("{}")
    (out / "table.json").symlink_to(outside)
    assert_user_error(cli("study", "minigrid_smoke", "--out", out), "table.json", "symbolic link")
    (out / "table.json").unlink()
    (out / "logs").mkdir()
    (out / "logs" / "random.log").symlink_to(outside)
    assert_user_error(cli("study", "minigrid_smoke", "--out", out), "random.log", "symbolic link")
    assert outside.read_text() == "{}" and sorted(p.name for p in out.iterdir()) == ["logs"]
