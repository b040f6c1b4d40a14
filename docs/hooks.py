"""mkdocs hooks: the Configuration and CLI pages, generated from the code at every build, and a page
per committed study, generated from its README.

`configuration_page()` reads the config dataclasses: each field's type, default, declared rule
(`duo_ai.core.checks.checked`) and the comment above it in the source; the sections chosen by a
`name` come from the registries, so a newly registered policy, model or algorithm gets its table
and its checks across sections (its `SectionChecks` hooks, in their docstrings' words).
`cli_page(app)` reads the Typer app's commands, arguments and options. `study_page(root, study)` is
`results/<study>/README.md` with its links pointed at the site. None of these pages is in git:
what they say is what the code and the results say.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import posixpath
import re
import textwrap
import typing
from pathlib import Path
from typing import Any

import typer
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

GENERATED = {"configuration.md": "configuration_page", "cli.md": "cli_page"}


# -- Configuration -----------------------------------------------------------------------------------
def field_docs(cls: type) -> dict[str, str]:
    """The comment lines right above each field of the dataclass `cls`, joined: its documentation."""
    docs, comment = {}, []
    for line in textwrap.dedent(inspect.getsource(cls)).splitlines()[1:]:
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped.lstrip("#").strip())
            continue
        match = re.match(r"\s{4}(\w+)\s*:", line)
        if match and comment:
            docs[match.group(1)] = " ".join(comment)
        comment = []
    return docs


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _show(value: Any) -> str:
    if value is dataclasses.MISSING:
        return "(required)"
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        value = {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for k, v in value.items()}
    if isinstance(value, str):
        return f"`{value}`"
    return f"`{json.dumps(value)}`"


def _text(text: str) -> str:
    """Prose from the code as Markdown: outside `code`, <name> is shown (not taken for HTML) and * is no emphasis."""
    parts = re.split(r"(`[^`]*`)", text)
    return "".join(p if p.startswith("`") else p.replace("<", "&lt;").replace("*", "\\*") for p in parts)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _nested(hint: Any) -> type | None:
    """The dataclass a field holds directly, or as the values of a dict (then shown as `<name>`)."""
    if dataclasses.is_dataclass(hint):
        return hint
    args = typing.get_args(hint)
    if typing.get_origin(hint) is dict and len(args) == 2 and dataclasses.is_dataclass(args[1]):
        return args[1]
    return None


def config_sections(cls: type, key: str = "") -> list[tuple[str, type]]:
    """`(dotted key, dataclass)` for `cls` and every dataclass nested in it, in field order."""
    sections = [(key, cls)]
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        inner = _nested(hints[f.name])
        if inner is not None:
            sub = f"{key}.{f.name}" if key else f.name
            if typing.get_origin(hints[f.name]) is dict:
                sub += ".<name>"
            sections += config_sections(inner, sub)
    return sections


def config_table(cls: type, key: str = "") -> str:
    """One dataclass as a Markdown table: key, type, default, what is allowed, what it means."""
    from duo_ai.core.checks import RULE

    docs, hints = field_docs(cls), typing.get_type_hints(cls)
    rows = ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        if _nested(hints[f.name]) is not None and typing.get_origin(hints[f.name]) is not dict:
            continue  # a section of its own
        rule = f.metadata.get(RULE)
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        cells = [
            f"`{key + '.' if key else ''}{f.name}`",
            f"`{kind}`",
            _show(_default(f)),
            _text(rule.describe()) if rule is not None else "",
            _text(docs.get(f.name, "")),
        ]
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(rows)


def _section(title: str, cls: type, key: str) -> str:
    doc = cls.__doc__ or ""
    doc = "" if doc.startswith(cls.__name__ + "(") else inspect.cleandoc(doc)  # dataclass's made-up docstring
    return f"## {title}\n\n{_text(doc)}\n\n{config_table(cls, key)}\n"


def configuration_page() -> str:
    """The Configuration page: every section of `Config` and of each registered policy, model and algorithm."""
    from duo_ai import config
    from duo_ai.core.checks import SectionChecks
    from duo_ai.core.registry import MODELS

    parts = [
        "# Configuration\n",
        "*Generated from the config dataclasses at every build of these pages.*\n",
        inspect.cleandoc(config.__doc__ or ""),
        "\nA config file is YAML with the same nesting; on the command line each key is a dotted "
        "`key=value` override (`env.task=starpilot`). Every rule in the *allowed* column is checked "
        "before anything is built or written; a value that breaks one stops the command with one line "
        "`error: <key>=<value> is not allowed; it must be <allowed>` and exit code 2. Numbers must also "
        "be finite, and `null` passes every rule of an optional field. The defaults of a `name`-selected "
        "section are its class's; the quickstart's own (`configs/quickstart.yaml`) are in the top-level "
        "`policy` and `algorithm` rows.\n",
    ]
    for key, cls in config_sections(config.Config):
        parts.append(_section(f"`{key}`" if key else "Top level", cls, key))
    named = {**config.NAMED_SECTIONS, "policy.model": MODELS}
    for section, registry in named.items():
        for name in registry.names():
            cls = registry.get(name).config_cls
            parts.append(_section(f"`{section}` with `name: {name}`", cls, section))
    parts.append("## Checks across sections\n")
    parts.append(
        "Run after every field's own rule, before anything is built or written. A `name`-selected "
        "section's class adds its own through the hooks of `duo_ai.core.checks.SectionChecks` "
        "(`resolve` fills defaults taken from other sections first):\n"
    )
    for check in (config.check_run, config.check_world_size):
        parts.append(f"- `{check.__name__}`: {_doc(check)}")
    for section, registry in named.items():
        for name in registry.names():
            cls = registry.get(name).config_cls
            for hook in ("resolve", "check_run", "check_world_size"):
                method = getattr(cls, hook, None)
                if method is not None and method is not getattr(SectionChecks, hook):
                    parts.append(f"- `{section}` with `name: {name}`, `{hook}`: {_doc(method)}")
    return "\n".join(parts) + "\n"


def _doc(function: Any) -> str:
    """A function's docstring as one line of page text."""
    return _text(" ".join(inspect.cleandoc(function.__doc__ or "").split()))


# -- CLI ---------------------------------------------------------------------------------------------
def command_section(name: str, command: Any, prog: str = "duo-ai") -> str:
    """One command (as Typer builds it): what it does, its usage line and a table of its arguments
    and options, in the words of its own `--help`."""
    with command.context_class(command, info_name=f"{prog} {name}") as ctx:
        usage = command.get_usage(ctx).removeprefix("Usage: ")
        records = [p.get_help_record(ctx) for p in command.params if not p.hidden]
    rows = ["| argument / option | meaning |", "|---|---|"]
    rows += [f"| `{_cell(names)}` | {_cell(_text(help_text))} |" for names, help_text in filter(None, records)]
    about = _text(inspect.cleandoc(command.help or ""))
    return f"## `{prog} {name}`\n\n{about}\n\n```\n{usage}\n```\n\n" + "\n".join(rows)


def cli_page(app: typer.Typer | None = None) -> str:
    """The CLI page: every command of the Typer `app` (default: duo-ai's), with its options."""
    if app is None:
        from duo_ai_cli.main import app
    group = typer.main.get_command(app)
    parts = [
        "# Command line\n",
        "*Generated from the `duo-ai` command's own definitions at every build of these pages.* "
        "`-h` or `--help` after any command prints the same; `duo-ai --version` prints the version.\n",
        _text(inspect.cleandoc(group.help or "")),
    ]
    for name, command in group.commands.items():
        parts.append(command_section(name, command))
    return "\n\n".join(parts) + "\n"


# -- Studies -----------------------------------------------------------------------------------------
# The site mirrors results/: results/<study>/README.md is the page studies/<study>/index.md, a file
# results/<path> that a README links is copied to studies/<path>, and docs/<page> is <page>. So a
# README's relative links need no change, except those that point at a README, at a folder or at a
# file outside results/ and docs/.
STUDIES = "studies"

# A code span or fenced block (left as it is), or an inline link or image: [text](target "title").
LINK = re.compile(r"(```.*?```|`[^`\n]*`)|(!?)\[((?:[^\]\\]|\\.)*)\]\(([^)\s]+)(\s+\"[^\"]*\")?\)", re.S)


def committed_studies(results: Path) -> list[str]:
    """The folders of `results` that hold a README.md and a table.json: the committed studies."""
    return sorted(d.name for d in results.iterdir() if (d / "README.md").is_file() and (d / "table.json").is_file())


def _site_path(root: Path, rel: str, studies: list[str]) -> str | None:
    """Where the repository path `rel` (posix, from `root`) is in the site, or None where it is not."""
    path = root / rel
    if rel.startswith("docs/"):
        return rel.removeprefix("docs/")  # mkdocs checks that the page or file exists
    if rel in ("results", "results/README.md"):
        return "studies.md"  # the overview, which lists the studies as results/README.md does
    for study in studies:
        if rel in (f"results/{study}", f"results/{study}/README.md"):
            return f"{STUDIES}/{study}/index.md"
    if rel.startswith("results/") and not path.is_dir() and not rel.endswith(".md"):
        return STUDIES + rel.removeprefix("results")  # copied; a missing one stays a broken link
    return None


def study_page(root: Path, study: str) -> tuple[str, dict[str, Path]]:
    """The page of `root/results/<study>/README.md`, served as studies/<study>/index.md, and the files its
    links need in the site (`{site path: repository file}`). A link to a README or to docs/ goes to its page;
    one to a folder, or to a file outside results/ and docs/, becomes its text and the repository path."""
    studies = committed_studies(root / "results")
    here = f"{STUDIES}/{study}"
    copies: dict[str, Path] = {}

    def point(match: re.Match) -> str:
        code, bang, text, target, title = match.groups()
        if code is not None or re.match(r"[a-z][a-z0-9+.-]*:|[#/]", target):
            return match.group(0)  # code, a URL, an anchor of this page or an absolute path
        path, hash_, anchor = target.partition("#")
        rel = posixpath.normpath(f"results/{study}/{path}")
        site = None if rel.startswith("../") else _site_path(root, rel, studies)
        if site is None:
            return text if f"`{rel}`" in text else f"{text} (`{rel}`)"
        if site.startswith(f"{STUDIES}/") and not site.endswith(".md") and (root / rel).is_file():
            copies[site] = root / rel
        return f"{bang}[{text}]({posixpath.relpath(site, here)}{hash_}{anchor}{title or ''})"

    readme = (root / "results" / study / "README.md").read_text()
    return LINK.sub(point, readme), copies


# -- mkdocs ------------------------------------------------------------------------------------------
def _root(config: Any) -> Path:
    """The repository: the folder of mkdocs.yml."""
    return Path(config.config_file_path).parent


def on_config(config: Any) -> Any:
    """Put a page per committed study in the nav's Studies section, after its overview."""
    section = next((item for item in config.nav if isinstance(item, dict) and "Studies" in item), None)
    if section is None or not isinstance(section["Studies"], list):
        raise PluginError("mkdocs.yml: the nav needs a 'Studies' section (a list) for the study pages")
    section["Studies"] += [f"{STUDIES}/{study}/index.md" for study in committed_studies(_root(config) / "results")]
    return config


def on_files(files: Files, config: Any) -> Files:
    """Add the generated pages to the site (replacing any file of the same name), and the files the study
    pages link."""
    pages = {path: globals()[maker]() for path, maker in GENERATED.items()}
    copies: dict[str, Path] = {}
    for study in committed_studies(_root(config) / "results"):
        pages[f"{STUDIES}/{study}/index.md"], linked = study_page(_root(config), study)
        copies.update(linked)
    for path in [*pages, *copies]:
        old = files.get_file_from_path(path)
        if old is not None:
            files.remove(old)
    for path, content in pages.items():
        files.append(File.generated(config, path, content=content))
    for path, source in copies.items():
        files.append(File.generated(config, path, abs_src_path=str(source)))
    return files
