"""The documentation site: it builds with --strict, its generated pages follow the code and the committed
studies, its examples run (the Extending page's in tests/test_plugins.py)."""

from __future__ import annotations

import html
import importlib.util
import os
import posixpath
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
import yaml
from filelock import FileLock

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


def nav_pages(nav: list) -> list[str]:
    """Every page a mkdocs nav names, sections included."""
    return [p for item in nav for v in item.values() for p in (nav_pages(v) if isinstance(v, list) else [v])]


def title(readme: Path) -> str:
    return next(line.removeprefix("# ") for line in readme.read_text().splitlines() if line.startswith("# "))


# A study that no commit holds, added to a copy of results/ for the build: it must get its page unasked.
NEW_STUDY = """# A new study: does its page appear?

![the curve](figures/curve.png)

Its table is [`table.json`](table.json); the speeds are on [the Speed page](../../docs/speed.md), the other
studies in [the index](../README.md) and [MiniGrid's](../minigrid_distshift/README.md), its study file is
[`configs/studies/minigrid_small.yaml`](../../configs/studies/minigrid_small.yaml) and its reports are in
[the report folder](report/). In code, `[a link](figures/unlinked.png)` is left alone.
"""


def build_site(project: Path, out: Path) -> None:
    """Build the site with --strict from `project`: the project's files linked, not copied, with one new study
    (`new_study`) and one folder without a table.json (`no_table`) added to results/."""
    for entry in ROOT.iterdir():
        if entry.name not in ("results", "site"):
            (project / entry.name).symlink_to(entry)
    (project / "results").mkdir()
    for entry in (ROOT / "results").iterdir():
        (project / "results" / entry.name).symlink_to(entry)
    new = project / "results" / "new_study"
    (new / "figures").mkdir(parents=True)
    (new / "report").mkdir()
    (new / "README.md").write_text(NEW_STUDY)
    (new / "table.json").write_text("{}")
    for name in ("curve.png", "unlinked.png"):
        shutil.copy(DOCS / "learning_curve.png", new / "figures" / name)
    (project / "results" / "no_table").mkdir()
    (project / "results" / "no_table" / "README.md").write_text("# No table\n")

    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", project / "mkdocs.yml", "-d", out]
    proc = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "WARNING" not in proc.stderr, proc.stderr[-3000:]


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """The site of `build_site`, built once per test run: the workers of `-n 2` share it (a build takes
    seconds of CPU)."""
    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        shared = shared.parent  # the run's folder, above each worker's own
    out = shared / "site"
    with FileLock(shared / "site.lock"):
        if not out.is_dir():
            building = tmp_path_factory.mktemp("site")
            build_site(tmp_path_factory.mktemp("project"), building)
            building.rename(out)  # only a site that built is shared
    return out


def article_links(page: Path) -> list[str]:
    """The relative targets (href and src) in a built page's text, anchors and URLs aside."""
    article = re.search(r"<article.*</article>", page.read_text(), re.S).group(0)
    targets = re.findall(r'(?:href|src)="([^"#]+)', article)
    return [t for t in targets if not re.match(r"[a-z]+:|/", t)]


def resolves(site: Path, page: Path, target: str) -> bool:
    """Whether a relative link of `page` (a built index.html) is a file of the site or a folder's index."""
    path = site / posixpath.normpath((page.parent.relative_to(site) / target).as_posix())
    return path.is_file() or (path / "index.html").is_file()


def test_site_builds_strictly_with_every_page_and_the_generated_ones(site):
    pages = nav_pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    assert len(pages) >= 15
    for page in pages:
        assert (site / page.removesuffix(".md").replace("index", "") / "index.html").is_file(), page
    assert "env.num_levels" in (site / "configuration" / "index.html").read_text()
    assert "duo-ai study-report" in (site / "cli" / "index.html").read_text()
    assert "evaluate_checkpoint" in (site / "api" / "index.html").read_text()


COMMITTED = hooks.committed_studies(ROOT / "results")


def test_there_are_committed_studies():
    assert len(COMMITTED) >= 2, COMMITTED


@pytest.mark.parametrize("study", COMMITTED)
def test_each_committed_study_has_its_page_with_its_figures_and_links(site, study):
    readme = ROOT / "results" / study / "README.md"
    page = site / "studies" / study / "index.html"
    text = page.read_text()
    assert html.escape(title(readme), quote=False) in text
    images = re.findall(r'<img[^>]* src="([^"]+)"', text)
    assert len(images) == readme.read_text().count("![") >= 1
    for target in article_links(page):
        assert resolves(site, page, target), target
    assert f'href="studies/{study}/"' in (site / "index.html").read_text()  # in the nav
    assert f'href="{study}/"' in (site / "studies" / "index.html").read_text()  # on the overview


def test_a_new_study_gets_a_page_and_the_files_it_links(site):
    page = site / "studies" / "new_study" / "index.html"
    text = page.read_text()
    assert "A new study: does its page appear?" in text
    assert 'href="studies/new_study/"' in (site / "index.html").read_text()
    assert not (site / "studies" / "no_table").exists()
    links = article_links(page)
    assert {"figures/curve.png", "table.json", "../../speed/", "../", "../minigrid_distshift/"} <= set(links)
    for target in links:
        assert resolves(site, page, target), target
    assert not (site / "studies" / "new_study" / "figures" / "unlinked.png").exists()
    # A file outside results/ and docs/, and a folder, are named by their path in the repository.
    assert "the report folder (<code>results/new_study/report</code>)" in text
    assert "<code>configs/studies/minigrid_small.yaml</code>" in text and "minigrid_small.yaml</a>" not in text
    assert "<code>[a link](figures/unlinked.png)</code>" in text


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
    from duo_ai_cli.main import app

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
