"""Every bad input is refused before work starts: exit code 2, one line, no traceback, nothing written.

Each case runs `duo-ai` in-process (`typer.testing.CliRunner`) from a scratch folder holding an
experiments folder with one finished tiny run `R` (a copy of the shared `tiny_run`), and checks
that no file under the scratch folder was created, changed or removed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from duo_ai_cli.main import app
from tests.conftest import TINY

runner = CliRunner()


@pytest.fixture(scope="module")
def scratch(tiny_run, tmp_path_factory) -> Path:
    """root/exp/R (a finished run), root/notes.txt (a text file), root/empty (an empty folder)."""
    root = tmp_path_factory.mktemp("bad_inputs")
    shutil.copytree(tiny_run, root / "exp" / "R")
    (root / "notes.txt").write_text("just some notes\n")
    (root / "empty").mkdir()
    return root


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


TRAIN = [*TINY, "evaluation.num_episodes=0", "experiments_dir=exp"]

# (arguments after `duo-ai`, fragments the one error line must hold). `{root}` is the scratch folder.
CASES = [
    # run names: a plain folder name only
    (["train", "name=..", "overwrite=true"], ["name='..'", "plain folder name"]),
    (["train", "name=.", "overwrite=true"], ["name='.'", "plain folder name"]),
    (["train", "name=../x"], ["name='../x'", "plain folder name"]),
    (["train", "name={root}/abs"], ["plain folder name"]),
    (["train", "name=a/b"], ["name='a/b'"]),
    (["train", "name=.hidden"], ["name='.hidden'"]),
    (["train", "name="], ["'name'", "cannot be empty"]),
    # the run folder and the experiments folder
    (["train", "name=R"], ["exp/R already exists", "overwrite=true", "--resume"]),
    (["train", "name=R", "overwrite=true", "algorithm.num_minibatches=7"], ["num_minibatches=7", "does not divide"]),
    (["train", "experiments_dir={root}/notes.txt"], ["experiments folder", "notes.txt", "not a folder"]),
    (["train", "experiments_dir={root}/notes.txt/sub"], ["experiments folder", "is a file, not a folder"]),
    # algorithm ranges
    (["train", "algorithm.learning_rate=0"], ["algorithm.learning_rate=0.0", "> 0"]),
    (["train", "algorithm.learning_rate=-3e-4"], ["algorithm.learning_rate=-0.0003", "> 0"]),
    (["train", "algorithm.gamma=1.5"], ["algorithm.gamma=1.5", "in [0, 1]"]),
    (["train", "algorithm.gae_lambda=-0.1"], ["algorithm.gae_lambda=-0.1", "in [0, 1]"]),
    (["train", "algorithm.clip_coef=0"], ["algorithm.clip_coef=0.0", "> 0"]),
    (["train", "algorithm.ent_coef=-0.01"], ["algorithm.ent_coef=-0.01", ">= 0"]),
    (["train", "algorithm.max_grad_norm=0"], ["algorithm.max_grad_norm=0.0", "> 0"]),
    (["train", "algorithm.update_epochs=0"], ["algorithm.update_epochs=0", ">= 1"]),
    (["train", "algorithm.num_minibatches=0"], ["algorithm.num_minibatches=0", ">= 1"]),
    (["train", "algorithm.num_steps=0"], ["algorithm.num_steps=0", ">= 1"]),
    (["train", "algorithm.total_timesteps=0"], ["algorithm.total_timesteps=0", ">= 1"]),
    (["train", "algorithm.save_freq=-1"], ["algorithm.save_freq=-1", ">= 0"]),
    (["train", "algorithm.learning_rate=nan"], ["algorithm.learning_rate=nan", "finite"]),
    (["train", "algorithm.lerning_rate=1e-3"], ["unknown config key 'algorithm.lerning_rate'"]),
    (["train", "algorithm.num_steps=many"], ["'algorithm.num_steps'"]),
    # seeds, threads, device, precision
    (["train", "seed=-1"], ["seed=-1", "[0, 2**31-1]"]),
    (["train", "seed=4294967296"], ["seed=4294967296", "[0, 2**31-1]"]),
    (["train", "num_threads=-2"], ["num_threads=-2", ">= 0"]),
    (["train", "device=gpu"], ["device='gpu'", "cuda:N"]),
    (["train", "precision=fp8"], ["precision='fp8'", "auto, fp32, bf16, fp16"]),
    # environment
    (["train", "env.num_envs=0"], ["env.num_envs=0", ">= 1"]),
    (["train", "env.num_levels=-1"], ["env.num_levels=-1"]),
    (["train", "env.start_level=-5"], ["env.start_level=-5"]),
    (["train", "env.distribution_mode=medium"], ["env.distribution_mode='medium'", "easy, hard"]),
    (["train", "env.name=atari"], ["env.name='atari'", "gym, minigrid, procgen"]),
    (["train", "env.splits.test.num_levels=-1"], ["env.splits.test.num_levels=-1"]),
    (["train", "env.task=coinrn"], ["unknown Procgen game 'coinrn'"]),
    # model
    (["train", "policy.model.channels=[]"], ["policy.model.channels=[]", "non-empty list"]),
    (["train", "policy.model.channels=[16,0]"], ["policy.model.channels=[16, 0]", ">= 1"]),
    (["train", "policy.model.hidden_size=0"], ["policy.model.hidden_size=0"]),
    # evaluation
    (["train", "evaluation.temperature=nan"], ["evaluation.temperature=nan", "finite number >= 0"]),
    (["train", "evaluation.temperature=-1"], ["evaluation.temperature=-1.0", ">= 0"]),
    (["train", "evaluation.num_envs=0"], ["evaluation.num_envs=0"]),
    (["train", "evaluation.splits=[val]"], ["evaluation.splits", "'val'", "train, test", "env.splits.val"]),
    (["train", "coordination.expert_query_cost_weight=-1"], ["coordination.expert_query_cost_weight=-1.0"]),
    # config files
    (["train", "-c", "exp/R/last.ckpt"], ["exp/R/last.ckpt is a checkpoint, not a YAML config", "--checkpoint"]),
    (["train", "-c", "exp/R"], ["exp/R is a run folder", "exp/R/config.yaml", "--resume exp/R"]),
    (["train", "-c", "missing.yaml"], ["missing.yaml not found"]),
    (["train", "-c", "notes.txt"], ["notes.txt must hold a mapping"]),
    # resume: what was trained cannot change
    (["train", "--resume", "exp/R", "name=other"], ["--resume", "name cannot change (tiny -> other)"]),
    (["train", "--resume", "exp/R", "env.task=bigfish"], ["cannot change env.task (starpilot -> bigfish)"]),
    (["train", "--resume", "exp/R", "env.num_levels=0"], ["cannot change env.num_levels (200 -> 0)"]),
    (["train", "--resume", "exp/R", "algorithm.num_steps=64"], ["cannot change algorithm.num_steps (32 -> 64)"]),
    (["train", "--resume", "exp/R", "algorithm.update_epochs=2"], ["cannot change algorithm.update_epochs"]),
    (["train", "--resume", "exp/R", "policy.model.hidden_size=64"], ["cannot change policy.model.hidden_size"]),
    (["train", "--resume", "exp/R", "seed=2"], ["cannot change seed (1 -> 2)"]),
    (["train", "--resume", "exp/R", "experiments_dir=elsewhere"], ["experiments_dir cannot change"]),
    (["train", "--resume", "exp/R", "overwrite=true"], ["overwrite has no effect with --resume"]),
    (["train", "--resume", "exp/R", "algorithm.total_timesteps=0"], ["algorithm.total_timesteps=0", ">= 1"]),
    (["train", "--resume", "exp/R/last.ckpt"], ["--resume takes a run folder", "--resume exp/R"]),
    (["train", "--resume", "exp/missing"], ["cannot resume", "exp/missing has no config.yaml or no checkpoint"]),
    (["train", "--resume", "exp/R", "-c", "notes.txt"], ["drop --config"]),
    # eval
    (["eval", "--checkpoint", "exp/R", "--episodes", "0"], ["--episodes=0", "in [1, 1000000]"]),
    (["eval", "--checkpoint", "exp/R", "--temperature", "nan"], ["--temperature=nan", "finite number >= 0"]),
    (["eval", "--checkpoint", "exp/R", "--temperature", "-0.5"], ["--temperature=-0.5", ">= 0"]),
    (["eval", "--checkpoint", "exp/R", "--seed", "-1"], ["--seed=-1"]),
    (["eval", "--checkpoint", "exp/R", "--json", "exp/R/last.ckpt/out.json"], ["--json file", "is a file"]),
    (["eval", "--checkpoint", "exp/R", "--json", "empty"], ["--json file empty", "is a folder"]),
    (["eval", "--checkpoint", "empty"], ["empty is a folder without last.ckpt"]),
    (["eval", "--checkpoint", "exp/R/nope.ckpt"], ["exp/R/nope.ckpt not found"]),
    (["eval", "--checkpoint", "notes.txt"], ["notes.txt is not a duo-ai checkpoint"]),
    (["eval", "--checkpoint", "exp/R", "--split", "val"], ["unknown split 'val'", "train, test"]),
    (["eval", "--checkpoint", "exp/R", "evaluation.temperature=inf"], ["evaluation.temperature=inf", "finite"]),
    (["eval", "--checkpoint", "exp/R", "-c", "exp/R/best_test.ckpt"], ["is a checkpoint, not a YAML config"]),
    (["eval", "--checkpoint", "exp/R", "--cost-sweep"], ["--cost-sweep evaluates coordinators"]),
    (["eval", "--checkpoint", "exp/R", "-n", "1", "policy.model.hidden_size=64"], ["do not fit model"]),
]


@pytest.mark.parametrize("args, fragments", CASES, ids=[" ".join(a[1:]) for a, _ in CASES])
def test_bad_input_is_refused_with_one_line_and_nothing_written(scratch, monkeypatch, args, fragments):
    monkeypatch.chdir(scratch)
    args = [a.format(root=scratch) for a in args]
    if args[0] == "train" and "--resume" not in args:
        args = ["train", *TRAIN, *args[1:]]
    before = snapshot(scratch)
    result = runner.invoke(app, [*args, "--no-progress"] if args[0] == "train" else args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment.format(root=scratch) in lines[0], (fragment, lines[0])
    assert snapshot(scratch) == before
    assert not Path(f"{scratch}/abs").exists()
