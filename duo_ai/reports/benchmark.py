"""`duo-ai benchmark-report`: several coordination studies in one table, as the benchmark reports them.

Each input is a folder written by `duo-ai study`: `study.yaml` names the test environment (`game`)
and the `setting` (skyline, or realistic with its `train_game`; a study.yaml without `setting` is
skyline), `table.json` is the study's table at its weight (the reward), and the AUC comes from
`report_auc/table.json` where the study evaluated the grid apart (`evaluation.auc_episodes`), else
from `report/table.json`. A pair of agents is named by its test environment and may appear once per
setting. For every (environment, setting, method):

- the AUC of reward with costs against the cost weight, with its 95% bootstrap interval;
- the reward at the study's weight with its 95% half-width;
- the AUC's ratio to the AUC of `ppo` in the skyline study of the same environment (the benchmark's
  reference), null where that study is not among the inputs or its AUC is not above 0.

A cell (environment, setting) is won by the method with the highest AUC, every method within
`TIE` of it winning too; a PPO coordinator competes through `ppo`, its first training seed, so
`ppo_s<seed>` (the other seeds) keep their rows but take no part in the wins.
"""

from __future__ import annotations

import io
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from rich.markup import escape
from rich.table import Table

from duo_ai import __version__
from duo_ai.core.errors import ConfigError
from duo_ai.core.files import atomic_write, atomic_write_text, check_output_folder
from duo_ai.reports import read_json, require

SETTINGS = ("skyline", "realistic")
REFERENCE = "ppo"  # the method every AUC is divided by, in the skyline study of its environment
EXTRA_SEED = re.compile(r"^ppo_s\d+$")  # a PPO coordinator's other training seeds: rows, not wins
TIE = 1e-6  # AUCs this close are equal: the evaluations store float32 rewards
JSON, MARKDOWN, FIGURE = "benchmark.json", "benchmark.md", "auc_ratio.png"
DPI = 100


@dataclass
class StudyFolder:
    """One study's identity (from study.yaml) and its two tables."""

    folder: Path  # as given
    env: str
    setting: str
    train_env: str
    auc_path: Path
    auc: dict[str, Any]  # the report with AUCs over the study's weights
    final_path: Path
    final: dict[str, Any]  # the study's table at its weight


# -- reading -------------------------------------------------------------------------------------
def read_study(folder: Path) -> StudyFolder:
    """A study folder's identity and tables, every number checked finite; a one-line error otherwise."""
    folder = Path(folder)
    spec = folder / "study.yaml"
    if not spec.is_file():
        raise ConfigError(f"{folder} is not a study folder (no study.yaml); pass a folder written by duo-ai study")
    try:
        study = yaml.safe_load(spec.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{spec} cannot be read as YAML ({' '.join(str(e).split())})") from None
    if not isinstance(study, dict) or not isinstance(study.get("game"), str) or not study["game"]:
        raise ConfigError(f"{spec} names no test environment (key game); pass a folder written by duo-ai study")
    setting = study.get("setting", "skyline")  # studies from before the realistic setting
    if setting not in SETTINGS:
        raise ConfigError(f"{spec}: setting is {setting!r}; expected one of {', '.join(SETTINGS)}")
    train_env = study.get("train_game") if setting == "realistic" else study["game"]
    auc_path = next(
        (p for p in (folder / "report_auc" / "table.json", folder / "report" / "table.json") if p.is_file()), None
    )
    if auc_path is None:
        raise ConfigError(
            f"{folder} has no report/table.json; finish the study (rerun duo-ai study) before reporting it"
        )
    final_path = folder / "table.json"
    if not final_path.is_file():
        raise ConfigError(f"{folder} has no table.json, the study's table; finish it (rerun duo-ai study) first")
    auc, final = read_table(auc_path), read_table(final_path)
    if len(auc.get("weights") or []) < 2:
        raise ConfigError(
            f"{auc_path} has no AUC (one cost weight); run the study over a weight grid, "
            "e.g. weights=[0,0.2,0.4,0.6,0.8,1], to report it"
        )
    for path, table in ((auc_path, auc), (final_path, final)):
        if table.get("env") != study["game"]:
            raise ConfigError(
                f"{path} is on {table.get('env')!r}, but {spec} tests {study['game']!r}; rerun its report"
            )
        if table.get("setting", setting) != setting:
            raise ConfigError(
                f"{path} is of setting {table['setting']!r}, but {spec} says {setting!r}; rerun the study"
            )
    if set(auc["methods"]) != set(final["methods"]):
        odd = ", ".join(sorted(set(auc["methods"]) ^ set(final["methods"])))
        raise ConfigError(
            f"{auc_path} and {final_path} differ in their methods ({odd}); rerun duo-ai study to finish it"
        )
    return StudyFolder(folder, study["game"], setting, train_env or "", auc_path, auc, final_path, final)


def read_table(path: Path) -> dict[str, Any]:
    """A study-report table.json with the numbers a benchmark reads, each finite."""
    table = read_json(path, "rerun duo-ai study-report")
    methods = table.get("methods") if isinstance(table, dict) else None
    if not isinstance(methods, dict) or not methods or not _number(table.get("cost_weight")):
        raise ConfigError(f"{path} is not a duo-ai study-report table (no methods or cost_weight)")
    several = len(table.get("weights") or []) > 1
    for name, m in methods.items():
        numbers = [m.get("reward_mean"), m.get("reward_ci95")]
        numbers += [(m.get("auc") or {}).get(key) for key in ("value", "low", "high")] if several else []
        if not isinstance(m.get("checkpoint"), str) or not all(map(_number, numbers)):
            raise ConfigError(
                f"{path}: method {name} lacks a checkpoint or a finite reward or AUC; rerun duo-ai study-report"
            )
    return table


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_distinct(studies: list[StudyFolder]) -> None:
    """One study per (environment, setting): two would make one cell with two answers."""
    seen: dict[tuple[str, str], StudyFolder] = {}
    for s in studies:
        other = seen.setdefault((s.env, s.setting), s)
        if other is s:
            continue
        if other.folder.resolve() == s.folder.resolve():
            raise ConfigError(f"{s.folder} is given twice; pass each study folder once")
        raise ConfigError(
            f"{other.folder} and {s.folder} are both the {s.setting} study of {s.env}; "
            "pass one study per environment and setting"
        )


def check_output(out_dir: Path, studies: list[StudyFolder]) -> Path:
    """The output-path rule, and never a study's own folder or one inside it (a study's files stay its own)."""
    out_dir = check_output_folder(out_dir, "output folder", (JSON, MARKDOWN, FIGURE))
    where = out_dir.resolve()
    for s in studies:
        home = s.folder.resolve()
        if where == home or home in where.parents:
            raise ConfigError(
                f"output folder {out_dir} is {'the study folder' if where == home else 'inside the study folder'} "
                f"{s.folder}; pass a folder outside every study, e.g. benchmark/"
            )
    return out_dir


# -- the benchmark -------------------------------------------------------------------------------
def load_studies(folders: list[Path]) -> list[StudyFolder]:
    """Every study folder read and checked, in cell order: by environment, skyline before realistic."""
    studies = sorted(map(read_study, folders), key=lambda s: (s.env, SETTINGS.index(s.setting)))
    check_distinct(studies)
    return studies


def benchmark(folders: list[Path]) -> dict[str, Any]:
    """The benchmark of these study folders: records, cells and wins (see the module's docstring)."""
    return summarize(load_studies(folders))


def summarize(studies: list[StudyFolder]) -> dict[str, Any]:
    reference = {
        s.env: s.auc["methods"][REFERENCE]["auc"]["value"]
        for s in studies
        if s.setting == "skyline" and REFERENCE in s.auc["methods"]
    }
    records, cells = [], []
    for s in studies:
        ppo = reference.get(s.env)
        # a ratio to an AUC at or below 0 would flip or explode: none
        rows = sorted(study_records(s, ppo if ppo is not None and ppo > 0 else None), key=lambda r: -r["auc"])
        records += rows
        cells.append(cell(s, rows, ppo))
    return {"records": records, "wins": count_wins(cells), "cells": cells, "generated": generated()}


def study_records(s: StudyFolder, reference: float | None) -> list[dict[str, Any]]:
    records = []
    for name, m in s.auc["methods"].items():
        auc, final = m["auc"], s.final["methods"][name]
        records.append(
            {
                "env": s.env,
                "setting": s.setting,
                "method": name,
                "auc": auc["value"],
                "auc_interval": [auc["low"], auc["high"]],
                "reward": final["reward_mean"],
                "reward_ci95": final["reward_ci95"],
                "weight": s.final["cost_weight"],
                "study": str(s.folder),
                # table.json's checkpoints are relative to the study folder
                "checkpoint": str(s.folder / final["checkpoint"]),
                "auc_ratio_to_skyline_ppo": None if reference is None else auc["value"] / reference,
            }
        )
    return records


def cell(s: StudyFolder, records: list[dict[str, Any]], reference: float | None) -> dict[str, Any]:
    """What a cell's numbers come from, and its winners."""
    competing = [r for r in records if not EXTRA_SEED.match(r["method"])]
    best = max((r["auc"] for r in competing), default=math.inf)
    return {
        "env": s.env,
        "setting": s.setting,
        "train_env": s.train_env,
        "study": str(s.folder),
        "weight": s.final["cost_weight"],
        "weights": s.auc["weights"],
        "auc_table": str(s.auc_path),
        "auc_episodes": s.auc.get("num_episodes"),
        "reward_table": str(s.final_path),
        "reward_episodes": s.final.get("num_episodes"),
        "skyline_ppo_auc": reference,
        "competing": [r["method"] for r in competing],
        "winners": [r["method"] for r in competing if r["auc"] >= best - TIE],
    }


def count_wins(cells: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Wins per setting and overall, every competing method listed (0 for none)."""
    wins: dict[str, dict[str, int]] = {setting: {} for setting in (*SETTINGS, "overall")}
    for c in cells:
        for key in (c["setting"], "overall"):
            for method in c["competing"]:
                wins[key][method] = wins[key].get(method, 0) + (method in c["winners"])
    return {key: dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))) for key, counts in wins.items()}


def generated() -> dict[str, Any]:
    """When and by which code: the date, duo-ai's version, and the commit of a checkout."""
    from duo_ai.runs import git_state

    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "duo_ai": __version__, **git_state()}


# -- writing -------------------------------------------------------------------------------------
def benchmark_report(folders: list[Path], out_dir: Path) -> dict[str, Any]:
    """Check every input and the output folder, then write benchmark.json, benchmark.md and auc_ratio.png."""
    studies = load_studies(folders)
    out_dir = check_output(Path(out_dir), studies)
    require("matplotlib", "benchmark-report")
    bench = summarize(studies)
    text = json.dumps(bench, indent=2, allow_nan=False) + "\n"
    figure = render(bench)
    out_dir.mkdir(exist_ok=True)
    atomic_write_text(out_dir / JSON, text)
    atomic_write_text(out_dir / MARKDOWN, markdown(bench))
    atomic_write(out_dir / FIGURE, lambda f: f.write(figure))
    return {**bench, "outputs": [str(out_dir / name) for name in (JSON, MARKDOWN, FIGURE)]}


def methods_in_order(bench: dict[str, Any]) -> list[str]:
    """The table's rows: the first cell's methods by AUC (the records' order), then any others by name."""
    first = (bench["cells"][0]["env"], bench["cells"][0]["setting"])
    in_first = [r["method"] for r in bench["records"] if (r["env"], r["setting"]) == first]
    return in_first + sorted({r["method"] for r in bench["records"]} - set(in_first))


def cell_name(c: dict[str, Any]) -> str:
    return f"{c['env']} ({c['setting']})"


def auc_text(r: dict[str, Any] | None) -> str:
    """`AUC [low, high] (ratio)`, '-' for a method the cell lacks."""
    if r is None:
        return "-"
    ratio = "" if r["auc_ratio_to_skyline_ppo"] is None else f" ({r['auc_ratio_to_skyline_ppo']:.3f})"
    return f"{r['auc']:.3f} [{r['auc_interval'][0]:.3f}, {r['auc_interval'][1]:.3f}]{ratio}"


def grid(bench: dict[str, Any]) -> list[tuple[str, list[tuple[str, bool]]]]:
    """The methods x cells table: per method, each cell's text and whether the method won it."""
    by_key = {(r["env"], r["setting"], r["method"]): r for r in bench["records"]}
    return [
        (m, [(auc_text(by_key.get((c["env"], c["setting"], m))), m in c["winners"]) for c in bench["cells"]])
        for m in methods_in_order(bench)
    ]


def shown_wins(bench: dict[str, Any]) -> dict[str, dict[str, int]]:
    """The win counts of the settings the inputs have, and overall."""
    return {key: counts for key, counts in bench["wins"].items() if counts}


def markdown(bench: dict[str, Any]) -> str:
    """benchmark.md: the AUC table, the win counts, and where each cell's numbers come from."""
    cells = bench["cells"]
    lines = [
        "# Benchmark: AUC of reward with costs over the cost weights",
        "",
        "Each entry: AUC [95% bootstrap interval] (its ratio to the AUC of `ppo` in the skyline study of the same "
        "environment). Bold: the cell's winner (highest AUC; `ppo_s<seed>` rows take no part).",
        "",
        "| method | " + " | ".join(cell_name(c) for c in cells) + " |",
        "|---|" + "---|" * len(cells),
    ]
    for method, row in grid(bench):
        entries = [f"**{text}**" if won else text for text, won in row]
        lines.append(f"| {method} | " + " | ".join(entries) + " |")
    wins = shown_wins(bench)
    lines += ["", "## Wins", "", "| method | " + " | ".join(wins) + " |", "|---|" + "---|" * len(wins)]
    for method in wins["overall"]:
        lines.append(f"| {method} | " + " | ".join(str(w.get(method, "-")) for w in wins.values()) + " |")
    lines += ["", "Studies: " + "; ".join(f"{cell_name(c)}: `{c['study']}`" for c in cells), ""]
    return "\n".join(lines)


def terminal_tables(bench: dict[str, Any]) -> list[Table]:
    """The benchmark as `duo-ai benchmark-report` prints it: the AUC table, then the wins."""
    table = Table(
        title="AUC of reward with costs over the cost weights",
        caption="AUC [95% bootstrap] (ratio to the skyline ppo's AUC); bold: the cell's winner",
    )
    table.add_column("method")
    for c in bench["cells"]:
        table.add_column(escape(f"{c['env']}\n{c['setting']}"), justify="right")
    for method, row in grid(bench):
        table.add_row(escape(method), *(f"[bold]{escape(text)}[/]" if won else escape(text) for text, won in row))
    counts = shown_wins(bench)
    wins = Table(title="wins: the highest AUC per environment and setting (PPO as its first seed, ppo)")
    wins.add_column("method")
    for key in counts:
        wins.add_column(key, justify="right")
    for method in counts["overall"]:
        wins.add_row(escape(method), *(str(w.get(method, "-")) for w in counts.values()))
    return [table, wins]


def render(bench: dict[str, Any]) -> bytes:
    """Bars: each method's AUC over the skyline ppo's, grouped by environment and setting (PNG)."""
    from matplotlib.figure import Figure

    cells, methods = bench["cells"], methods_in_order(bench)
    ratio = {(r["env"], r["setting"], r["method"]): r["auc_ratio_to_skyline_ppo"] for r in bench["records"]}
    fig = Figure(figsize=(max(9.0, 2 + 0.3 * len(cells) * len(methods)), 5.5), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / len(methods)
    x = np.arange(len(cells))
    for i, method in enumerate(methods):
        values = [ratio.get((c["env"], c["setting"], method)) for c in cells]
        heights = [np.nan if v is None else v for v in values]  # a missing bar: no method or no skyline
        ax.bar(x - 0.4 + (i + 0.5) * width, heights, width, color=f"C{i % 10}", label=method)
    ax.axhline(1.0, color="0.3", linestyle=":", linewidth=1)
    ax.set_xticks(x, [f"{c['env']}\n{c['setting']}" for c in cells])
    ax.set_ylabel("AUC / AUC of skyline ppo")
    ax.set_title("Each method's AUC over the skyline PPO's, per environment and setting")
    if all(r["auc_ratio_to_skyline_ppo"] is None for r in bench["records"]):
        ax.text(0.5, 0.5, "no skyline study with ppo among the inputs", transform=ax.transAxes, ha="center")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()
