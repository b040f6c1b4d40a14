"""Shipped configs found by name from any folder, `duo-ai configs`, shell completion, and the wheel:
built from this checkout, installed in a fresh venv outside it, running the README's commands."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from duo_ai.config import load_config
from duo_ai.core.config_files import CONFIGS, opening_sentence, shipped_names
from duo_ai.study.schema import STUDIES, load_study
from tests.conftest import assert_user_error, cli

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p.stem for p in (ROOT / "configs").glob("*.yaml"))
SHIPPED_STUDIES = sorted(p.stem for p in (ROOT / "configs" / "studies").glob("*.yaml"))


def test_the_shipped_configs_are_the_checkouts_configs_folder():
    assert CONFIGS.resolve() == (ROOT / "configs").resolve() and STUDIES == CONFIGS / "studies"
    assert shipped_names() == SHIPPED and "procgen_agent" in SHIPPED
    assert shipped_names(STUDIES) == SHIPPED_STUDIES and "minigrid_small" in SHIPPED_STUDIES


def test_a_config_and_a_study_are_found_by_name_from_any_folder(tmp_path, monkeypatch):
    by_path = load_config(ROOT / "configs" / "procgen_ppo.yaml")
    monkeypatch.chdir(tmp_path)  # no configs/ here
    assert load_config("procgen_ppo") == by_path == load_config("procgen_ppo.yaml")
    assert load_study("minigrid_smoke") == load_study(str(ROOT / "configs" / "studies" / "minigrid_smoke.yaml"))
    # A file of one's own builds on shipped configs by name, and a path still wins over a name.
    (tmp_path / "mine.yaml").write_text("defaults: [procgen_ppo]\ncoordination:\n  expert_query_cost_weight: 0.7\n")
    mine = load_config("mine.yaml")
    assert mine.coordination.expert_query_cost_weight == 0.7 and mine.policy == by_path.policy
    (tmp_path / "quickstart").write_text("name: local\n")
    assert load_config("quickstart").name == "local"
    (tmp_path / "study.yaml").write_text("defaults: [minigrid_smoke]\nweights: [0, 1]\nweight: 1\n")
    assert load_study("study.yaml").agents == load_study("minigrid_smoke").agents


def test_an_unknown_name_is_one_line_listing_the_shipped_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_user_error(cli("train", "-c", "procgen_agnet"), "config file procgen_agnet not found", "procgen_agent")
    assert_user_error(cli("study", "minigrid_smal"), "study file minigrid_smal not found", "minigrid_small")
    (tmp_path / "mine.yaml").write_text("defaults: [nowhere]\n")
    assert_user_error(cli("train", "-c", "mine.yaml"), "base config 'nowhere' not found", "shipped configs")
    # A name never reaches outside the shipped folder.
    assert_user_error(cli("train", "-c", "../configs/quickstart"), "not found")


def test_duo_ai_configs_lists_and_prints_the_shipped_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    listed = cli("configs")
    assert listed.exit_code == 0, listed.output
    # A row starts with its name after one space of padding; wrapped descriptions are indented further.
    rows = dict(line.split()[:2] for line in listed.stdout.splitlines()[1:] if line[:1] == " " and line[1:2] != " ")
    assert rows == {**dict.fromkeys(SHIPPED, "config"), **dict.fromkeys(SHIPPED_STUDIES, "study")}
    standard, every_k = (ROOT / "configs" / f"{name}.yaml" for name in ("procgen_standard", "procgen_every_k"))
    assert (
        opening_sentence(standard)
        == "The Procgen paper's PPO recipe (Cobbe et al. 2020), easy mode, 25M steps: for GPU boxes"
    )
    assert opening_sentence(every_k).startswith("Baseline coordinator: ask the expert at steps 0, k, 2k, ... of each")
    shown = cli("configs", "minigrid_small")
    assert shown.exit_code == 0 and shown.stdout == (ROOT / "configs" / "studies" / "minigrid_small.yaml").read_text()
    assert_user_error(cli("configs", "nope"), "no shipped config or study file is named 'nope'", "duo-ai configs")


def duo_ai_script() -> str:
    script = Path(sys.executable).with_name("duo-ai")
    return str(script) if script.is_file() else shutil.which("duo-ai")


def complete(words: str) -> list[str]:
    """What bash completion offers for the last of `words` (the protocol `--show-completion` installs)."""
    env = {
        **os.environ,
        "_DUO_AI_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - 1),
    }
    done = subprocess.run([duo_ai_script()], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_shell_completion_offers_commands_and_shipped_names():
    script = subprocess.run([duo_ai_script(), "--show-completion", "bash"], capture_output=True, text=True, timeout=60)
    assert script.returncode == 0 and "complete -o default -F _duo_ai_completion duo-ai" in script.stdout
    assert complete("duo-ai tr") == ["train"]
    assert complete("duo-ai train -c procgen_a") == ["procgen_agent", "procgen_always"]
    assert complete("duo-ai study minigrid_s") == ["minigrid_small", "minigrid_smoke", "minigrid_smoke_realistic"]


def test_the_wheel_lists_every_package_and_ships_the_configs():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = sorted(".".join(p.relative_to(ROOT).parent.parts) for p in (ROOT / "duo_ai").rglob("__init__.py"))
    assert sorted(setuptools["packages"]) == sorted([*packages, "duo_ai.configs", "duo_ai_cli"])
    assert setuptools["package-dir"] == {"duo_ai_cli": "cli", "duo_ai.configs": "configs"}


README_COMMANDS = [
    ["--version"],
    ["configs"],
    # The README's coordination commands, one tiny iteration each.
    ["train", "-c", "procgen_agent", "name=novice", "env.task=starpilot"],
    ["eval", "--checkpoint", "experiments/novice", "-n", "2", "-t", "0", "--json", "eval.json"],
    ["compare", "experiments/novice"],
]
TINY_RUN = ["env.num_envs=2", "algorithm.num_steps=8", "algorithm.num_minibatches=1", "algorithm.total_timesteps=16"]
TINY_RUN += ["evaluation.num_episodes=2", "evaluation.num_envs=2", "num_threads=1", "--no-progress"]


@pytest.mark.slow
def test_the_wheel_installed_outside_the_checkout_runs_the_readme_commands(tmp_path):
    source = tmp_path / "source"  # built from a copy: a build writes build/ beside the sources
    source.mkdir()
    for part in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / part, source / part)
    for part in ("duo_ai", "cli", "configs"):
        shutil.copytree(ROOT / part, source / part, ignore=shutil.ignore_patterns("__pycache__"))
    run = lambda *command, **kw: subprocess.run(command, capture_output=True, text=True, timeout=300, **kw)  # noqa: E731
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path, source)
    assert built.returncode == 0, built.stderr[-2000:]
    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", "--without-pip", venv).returncode == 0
    # The fresh venv sees this environment's dependencies (torch, procgen, ...) but not its duo-ai:
    # a path in a .pth file does not run the .pth files (the editable install's hook) it holds.
    deps = [p for p in sys.path if p.endswith("site-packages")]
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "deps.pth").write_text("\n".join(deps) + "\n")
    wheel = next(tmp_path.glob("duo_ai-*.whl"))
    installed = run(
        sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--no-deps", "--no-index", wheel
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = run(
        venv / "bin" / "python",
        "-c",
        "import duo_ai, duo_ai_cli; print(duo_ai.__file__, duo_ai_cli.__file__)",
        cwd=work,
    )
    assert where.stdout.split() == [str(site / "duo_ai" / "__init__.py"), str(site / "duo_ai_cli" / "__init__.py")]
    assert run(venv / "bin" / "python", "-c", "import cli", cwd=work).returncode != 0  # no top-level `cli` installed
    for command in README_COMMANDS:
        extra = TINY_RUN if command[0] == "train" else []
        done = run(venv / "bin" / "duo-ai", *command, *extra, cwd=work)
        assert done.returncode == 0, (command, done.stderr[-2000:])
    assert (work / "experiments" / "novice" / "last.ckpt").is_file() and (work / "eval.json").is_file()
    # A shipped study is found by name and every config it names is checked: only the out folder is left to refuse.
    study = run(venv / "bin" / "duo-ai", "study", "minigrid_small", "--out", "/dev/null/study", cwd=work)
    assert study.returncode == 2 and "out folder" in study.stderr and "config file" not in study.stderr, study.stderr
