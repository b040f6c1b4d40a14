"""`duo-ai train`: the runs one command trains, every one checked before the first one starts.

One run from a config (`-c` files and overrides), a run continued (`--resume RUN_DIR`, by
`duo_ai.runs.resume_config`), or one run per seed (`--seeds 1,2,3`: runs `<name>_s<seed>`, trained
in turn). Each seed's run folder is checked by `RunFolder` before any trains, so a batch never
stops half-way on a folder that is taken. The runs themselves are `duo_ai.training.Trainer`'s.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from duo_ai.config import Config, load_config
from duo_ai.core.errors import ConfigError
from duo_ai.runs import RunFolder, resume_config


def parse_seeds(text: str) -> list[int]:
    """`"1,2,3"` -> [1, 2, 3]; a one-line error for anything else."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--seeds takes comma-separated integers, e.g. --seeds 1,2,3; got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds takes distinct comma-separated integers, e.g. --seeds 1,2,3; got {text!r}")
    return seeds


def seed_runs(config_paths: Any, overrides: list[str], seeds: str, resume: Path | None = None) -> list[list[str]]:
    """The overrides of each seed's run, `name=<name>_s<seed> seed=<seed>`, its folder checked."""
    if resume is not None:
        raise ConfigError("--seeds starts new runs; resume each seed's run on its own with --resume RUN_DIR")
    base = load_config(config_paths, overrides)
    kept = [o for o in overrides if o.split("=", 1)[0].strip() not in ("name", "seed")]
    runs = [[*kept, f"name={base.name}_s{seed}", f"seed={seed}"] for seed in parse_seeds(seeds)]
    for run in runs:
        RunFolder(load_config(config_paths, run), resume=False)
    return runs


def seed_commands(
    config_paths: list[Path] | None,
    overrides: list[str],
    seeds: str | None,
    resume: Path | None,
    progress: bool,
    modules: list[str],
) -> list[str]:
    """`--print-commands`: the `duo-ai train` command of each seed's run, to launch them elsewhere."""
    if seeds is None:
        raise ConfigError("--print-commands prints the commands of a multi-seed run; add --seeds, e.g. --seeds 1,2,3")
    flags = [arg for path in config_paths or [] for arg in ("-c", str(path))] + ([] if progress else ["--no-progress"])
    flags += [arg for module in modules for arg in ("--import", module)]
    runs = seed_runs(config_paths, overrides, seeds, resume)
    return [shlex.join(["duo-ai", "train", *flags, *run]) for run in runs]


def runs_to_train(
    config_paths: list[Path] | None,
    overrides: list[str],
    resume: Path | None = None,
    seeds: str | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> list[Config]:
    """The configs of the runs to train, in turn; `log` gets a `resume: key old -> new` line per change."""
    if seeds is not None:
        return [load_config(config_paths, run) for run in seed_runs(config_paths, overrides, seeds, resume)]
    if resume is None:
        return [load_config(config_paths, overrides)]
    if config_paths:
        raise ConfigError("--resume takes the run's own config.yaml; drop --config (overrides still apply)")
    config, changes = resume_config(resume, overrides)
    for change in changes:
        log(change)
    return [config]
