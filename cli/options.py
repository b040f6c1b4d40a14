"""What several `duo-ai` commands share: the console they print to and their common options (`-c`,
`--import`, overrides), with the shell completion of the shipped configs' and studies' names."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

out = Console()


IMPORT_HELP = (
    "Import this Python module (repeatable) before the config is read, so the models, policies, algorithms "
    "and env families it registers can be named; see Extending duo-ai."
)


def import_option() -> list[str] | None:
    """`--import MODULE`, repeatable: the same option on every command that builds a config."""
    return typer.Option(None, "--import", help=IMPORT_HELP, show_default=False)


def import_modules(modules: list[str] | None) -> None:
    """Import the `--import` modules; a missing one ends the command with one line, exit 2."""
    from duo_ai.plugins import import_modules as load

    load(modules or [])


CONFIG_HELP = (
    "A YAML config file, or the name of a shipped one (procgen_agent, minigrid_agent, ...: `duo-ai configs` "
    "lists them); give -c more than once to layer files, later ones winning."
)


def complete_config(incomplete: str) -> list[str]:
    """Shell completion of -c: the shipped configs' names."""
    from duo_ai.core.config_files import CONFIGS

    return completions(CONFIGS, incomplete)


def complete_study(incomplete: str) -> list[str]:
    """Shell completion of a study file: the shipped studies' names."""
    from duo_ai.core.config_files import STUDIES

    return completions(STUDIES, incomplete)


def completions(folder: Path, incomplete: str) -> list[str]:
    from duo_ai.core.config_files import shipped_names

    return [name for name in shipped_names(folder) if name.startswith(incomplete)]


def config_option(help: str) -> list[Path] | None:
    """`-c/--config FILE_OR_NAME`, repeatable, completing the shipped configs' names."""
    return typer.Option(None, "--config", "-c", autocompletion=complete_config, help=help)


OVERRIDES_HELP = "Config overrides as dotted key=value pairs, e.g. env.task=starpilot algorithm.learning_rate=3e-4."
EVAL_SEED_HELP = (
    "Seed of the episodes and actions; video and ask-map with the same --seed play the same levels. Default: the run's."
)


def temperature_option() -> float | None:
    """`-t/--temperature`: how a checkpoint's agent samples its actions (`eval`, `video`)."""
    return typer.Option(
        None, "--temperature", "-t", help="Sampling temperature; 0 = greedy. Default: evaluation.temperature."
    )


def split_option() -> str | None:
    """`--split`: the level split a checkpoint plays (`eval`, `video`)."""
    return typer.Option(
        None, "--split", help="Level split (train, test, or one from env.splits). Default: first evaluation split."
    )
