"""Reading the records a run folder keeps (`config.yaml`, `progress.csv`, `eval.csv`, `summary.json`),
and grouping runs that differ only in their seed: what `plot` and `compare` look at.

Writing and guarding run folders (locks, `--resume`, what ran) is `duo_ai.runs`; this module only reads.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from duo_ai.core.errors import ConfigError
from duo_ai.logger import EVAL_COLUMNS, PROGRESS_COLUMNS

# Config keys that do not make two runs different experiments: identity and compute settings.
NOT_EXPERIMENT = (
    "name",
    "seed",
    "overwrite",
    "experiments_dir",
    "device",
    "precision",
    "channels_last",
    "compile",
    "num_threads",
    "cache_host_memory",
)


def read_csv(path: Path, columns: tuple[str, ...]) -> dict[str, np.ndarray]:
    """A CSV written by `RunLogger` as column -> array (float, NaN for empty cells; `split` as str).

    Rows of another width (a line being written right now) are skipped.
    """
    rows: list[list[str]] = []
    damaged = ConfigError(f"{path} is damaged (not the CSV duo-ai train writes); restore it or retrain the run")
    if path.is_file():
        try:
            with open(path, newline="") as f:
                rows = [row for row in csv.reader(f) if len(row) == len(columns)][1:]
        except (UnicodeDecodeError, csv.Error):
            raise damaged from None
    table: dict[str, np.ndarray] = {}
    for i, column in enumerate(columns):
        cells = [row[i] for row in rows]
        if column == "split":
            table[column] = np.array(cells, dtype=object)
            continue
        try:
            table[column] = np.array([float(c) if c else np.nan for c in cells], dtype=np.float64)
        except ValueError:
            raise damaged from None
    return table


@dataclass
class Run:
    """One run folder: its config, its training and evaluation rows, and its summary (if finished)."""

    path: Path
    config: dict[str, Any]
    progress: dict[str, np.ndarray] = field(default_factory=dict)
    evals: dict[str, np.ndarray] = field(default_factory=dict)
    summary: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return str(self.config.get("name") or self.path.name)

    @property
    def seed(self) -> Any:
        return self.config.get("seed")

    @property
    def game(self) -> str:
        env = self.config.get("env") or {}
        return f"{env.get('name', 'procgen')}/{env.get('task', '?')}"

    @property
    def is_coordination(self) -> bool:
        return bool(self.config.get("train_novice") or self.config.get("train_expert"))

    def experiment_key(self) -> str:
        """The config without seed, name and compute settings: equal for runs of one experiment."""
        rest = {k: v for k, v in self.config.items() if k not in NOT_EXPERIMENT}
        return json.dumps(rest, sort_keys=True, default=str)


def load_run(path: str | Path, need: str = "progress") -> Run:
    """Read a run folder; `need` is the file the caller cannot do without (`progress` or `summary`)."""
    path = Path(path)
    if not (path / "config.yaml").is_file():
        what = "does not exist" if not path.exists() else "is not a run folder (no config.yaml)"
        raise ConfigError(f"{path} {what}; pass run folders written by duo-ai train, e.g. experiments/quickstart")
    try:
        config = yaml.safe_load((path / "config.yaml").read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError):
        config = None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}/config.yaml is not a duo-ai config; pass a run folder written by duo-ai train")
    if need == "progress" and not (path / "progress.csv").is_file():
        raise ConfigError(
            f"{path} has no progress.csv (trained before duo-ai wrote it); resume or retrain it to get curves"
        )
    summary = None
    if (path / "summary.json").is_file():
        try:
            summary = json.loads((path / "summary.json").read_text())
        except (ValueError, UnicodeDecodeError):
            summary = None
        if not isinstance(summary, dict) or not isinstance(summary.get("eval", {}), dict):
            raise ConfigError(
                f"{path}/summary.json is damaged (not the summary duo-ai train writes); finish the run "
                f"again with --resume {path}, or leave it out"
            )
    elif need == "summary":
        raise ConfigError(f"{path} has no summary.json: the run has not finished; finish it with --resume {path}")
    progress = read_csv(path / "progress.csv", PROGRESS_COLUMNS)
    evals = read_csv(path / "eval.csv", EVAL_COLUMNS)
    return Run(path, config, progress, evals, summary)


def load_runs(paths: list[Path], need: str = "progress") -> list[Run]:
    if not paths:
        raise ConfigError("pass at least one run folder, e.g. experiments/quickstart")
    seen: dict[Path, Path] = {}
    for path in paths:  # one run given twice would count as two seeds and narrow the interval
        resolved = Path(path).resolve()
        if resolved in seen:
            raise ConfigError(f"run folder {path} is given twice (as {seen[resolved]} and {path}); pass each run once")
        seen[resolved] = Path(path)
    runs = [load_run(p, need) for p in paths]
    games = sorted({run.game for run in runs})
    if len(games) > 1:
        raise ConfigError(f"these runs are of different games ({', '.join(games)}); compare runs of one game at a time")
    return runs


@dataclass
class Group:
    """Runs of one experiment that differ only in their seed."""

    label: str
    runs: list[Run]

    @property
    def seeds(self) -> list[Any]:
        return [run.seed for run in self.runs]


def group_label(runs: list[Run]) -> str:
    """The shared name with the `_s<seed>` suffix of `--seeds` runs dropped, e.g. `quickstart`."""
    names = [re.sub(rf"_s{re.escape(str(run.seed))}$", "", run.name) for run in runs]
    return names[0] if len(set(names)) == 1 else f"{names[0]} +{len(runs) - 1}"


def group_runs(runs: list[Run]) -> list[Group]:
    """Runs grouped by `experiment_key`, in the order first seen; runs sorted by seed within a group."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.experiment_key(), []).append(run)
    out = []
    for members in groups.values():
        members = sorted(members, key=lambda r: (str(type(r.seed)), r.seed))
        out.append(Group(group_label(members), members))
    labels = [g.label for g in out]
    for g in out:  # two experiments of one name (say, different learning rates): tell them apart
        if labels.count(g.label) > 1:
            g.label = ", ".join(run.name for run in g.runs)
    return out
