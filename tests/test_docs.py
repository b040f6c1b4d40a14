"""The documentation site: it builds with --strict, its generated pages follow the code, its examples run
(the Extending page's in tests/test_plugins.py)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import typer
import yaml

from duo_ai.core.checks import checked
from duo_ai.envs.config import EnvConfig

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def load_hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hooks = load_hooks()


def test_site_builds_strictly_with_every_page_and_the_generated_ones(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", ROOT / "mkdocs.yml", "-d", site]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    pages = [page for item in yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"] for page in item.values()]
    assert len(pages) >= 15
    for page in pages:
        assert (site / page.removesuffix(".md").replace("index", "") / "index.html").is_file(), page
    assert "env.num_levels" in (site / "configuration" / "index.html").read_text()
    assert "duo-ai study-report" in (site / "cli" / "index.html").read_text()
    assert "evaluate_checkpoint" in (site / "api" / "index.html").read_text()


def test_configuration_page_follows_a_field_doc_and_rule():
    @dataclass
    class Section:
        # How many widgets to make.
        widgets: int = checked(4, ge=1)

    @dataclass
    class Changed:
        # How many widgets to make, at most 8.
        widgets: int = checked(4, ge=1, le=8)
        mode: str = checked("fast", choices=("fast", "slow"))

    before, after = hooks.config_table(Section, "demo"), hooks.config_table(Changed, "demo")
    assert "| `demo.widgets` | `int` | `4` | a number >= 1 | How many widgets to make. |" in before
    assert "| `demo.widgets` | `int` | `4` | in [1, 8] | How many widgets to make, at most 8. |" in after
    assert "`demo.mode`" in after and "one of fast, slow" in after and "mode" not in before


def test_configuration_page_lists_every_key_of_every_section():
    page = hooks.configuration_page()
    for name in ("name", "num_envs", "distribution_mode", "num_levels", "splits"):
        assert f"`env.{name}`" in page, name
    assert "0 = unlimited levels." in page  # the comment above EnvConfig.num_levels
    for key in ("algorithm.learning_rate", "policy.model.expert_prob_init", "coordination.base_penalty"):
        assert f"`{key}`" in page, key
    assert "`algorithm` with `name: calibrate`" in page and "`policy.model` with `name: mlp_ppo`" in page
    assert len(re.findall(r"^\| `env\.", page, re.M)) >= len(EnvConfig.__dataclass_fields__)


def test_cli_page_follows_the_app():
    app = typer.Typer()

    @app.command()
    def greet(who: str = typer.Option("world", help="Whom to greet.")) -> None:
        """Say hello."""

    @app.command()
    def leave() -> None:
        """Say goodbye."""

    before = hooks.cli_page(app)
    assert "## `duo-ai greet`" in before and "Whom to greet." in before and "Say goodbye." in before

    @app.command()
    def wave(times: int = typer.Option(1, "--times", "-t", help="How often.")) -> None:
        """Wave a hand."""

    after = hooks.cli_page(app)
    assert "## `duo-ai wave`" in after and "-t, --times" in after and "## `duo-ai wave`" not in before


def test_cli_page_has_every_command_of_duo_ai():
    from cli.main import app

    page = hooks.cli_page()
    for command in app.registered_commands:
        assert f"## `duo-ai {command.name or command.callback.__name__}`" in page
    assert "--checkpoint" in page and "--seeds" in page


def test_configuration_page_lists_each_classs_own_checks_across_sections(monkeypatch):
    from duo_ai.algorithms.ppo import PPOConfig
    from duo_ai.core.registry import MODELS

    def checks() -> str:
        page = hooks.configuration_page()
        return page[page.index("## Checks across sections") :]

    before = checks()
    assert f"- `algorithm` with `name: ppo`, `check_run`: {hooks._doc(PPOConfig.check_run)}" in before
    assert "- `algorithm` with `name: calibrate`, `resolve`: `algorithm.split: null` takes" in before
    assert "`algorithm` with `name: ppo`, `resolve`" not in before  # PPO has no resolve of its own

    @dataclass
    class DemoConfig:
        name: str = "demo"

        def check_run(self, config):
            """`policy.model.name=demo` needs at least 2 envs."""

    monkeypatch.setitem(MODELS._entries, "demo", type("Demo", (), {"config_cls": DemoConfig}))
    after = checks()
    assert "- `policy.model` with `name: demo`, `check_run`: `policy.model.name=demo` needs at least 2 envs." in after
    assert "demo" not in before
