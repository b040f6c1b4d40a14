"""`duo-ai compare`: final evaluation results of runs, one row per group of seeds and split.

The numbers are each run's final evaluation (`summary.json`'s `eval`, the same metrics as
`duo-ai eval`). A group of several seeds reports the mean (or IQM) over seeds with a 95% bootstrap
interval over seeds; a single run reports its mean with the 95% interval over its episodes.
Coordination runs add the base reward (without costs), the expert fraction and, when present, the
AUC of the cost sweep.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from duo_ai.core.errors import ConfigError
from duo_ai.core.files import atomic_write_text, json_text
from duo_ai.reports import check_output
from duo_ai.reports.records import Group, Run, group_runs, load_runs
from duo_ai.reports.stats import AGGREGATES, interval

# Metrics reported besides the reward, when every run of a group has them.
EXTRA_METRICS = ("base_reward_mean", "expert_fraction", "auc")


def final_evals(run: Run) -> dict[str, dict[str, Any]]:
    evals = (run.summary or {}).get("eval") or {}
    if not evals:
        raise ConfigError(
            f"{run.path}/summary.json has no final evaluation (evaluation.num_episodes was 0); "
            f"evaluate its checkpoint with duo-ai eval instead"
        )
    return evals


def metric_interval(group: Group, split: str, key: str, aggregate: str) -> dict[str, Any] | None:
    """The group's estimate of one metric with its interval and per-run values; None if a run lacks it."""
    metrics = [final_evals(run)[split] for run in group.runs]
    if not all(isinstance(m.get(key), (int, float)) for m in metrics):
        return None
    values = [float(m[key]) for m in metrics]
    if len(values) == 1 and key == "reward_mean":
        half = float(metrics[0].get("reward_ci95", 0.0))
        out = {"estimate": values[0], "low": values[0] - half, "high": values[0] + half, "n": 1}
        return {**out, "interval": "95% over episodes", "per_run": values}
    kind = f"95% bootstrap over {len(values)} seeds" if len(values) > 1 else "none (one run)"
    return {**interval(values, aggregate).as_dict(), "interval": kind, "per_run": values}


def group_rows(group: Group, split: str | None, aggregate: str) -> list[dict[str, Any]]:
    """One row per split that every run of the group evaluated (or just `split`)."""
    shared = set.intersection(*(set(final_evals(run)) for run in group.runs))
    splits = sorted(shared) if split is None else [split] if split in shared else []
    rows = []
    for s in splits:
        row: dict[str, Any] = {
            "group": group.label,
            "split": s,
            "runs": [str(run.path) for run in group.runs],
            "seeds": group.seeds,
            "num_episodes": [final_evals(run)[s].get("num_episodes") for run in group.runs],
        }
        for key in ("reward_mean", *EXTRA_METRICS):
            value = metric_interval(group, s, key, aggregate)
            if value is not None:
                row[key] = value
        rows.append(row)
    return rows


def compare_runs(
    paths: list[Path], split: str | None = None, aggregate: str = "mean", json_out: Path | None = None
) -> dict[str, Any]:
    """Check the inputs, read the runs' final evaluations and group them; writes `json_out` if given."""
    if aggregate not in AGGREGATES:
        raise ConfigError(f"unknown --agg {aggregate!r}; choose one of: {', '.join(AGGREGATES)}")
    if json_out is not None:
        json_out = check_output(json_out, (".json",), "--json")
    runs = load_runs(paths, need="summary")
    for run in runs:
        final_evals(run)
    if split is not None and not any(split in final_evals(run) for run in runs):
        known = sorted({s for run in runs for s in final_evals(run)})
        raise ConfigError(f"no run was evaluated on split {split!r}; choose one of: {', '.join(known)}")
    rows = [row for group in group_runs(runs) for row in group_rows(group, split, aggregate)]
    report = {"aggregate": aggregate, "rows": rows}
    if json_out is not None:
        atomic_write_text(json_out, json_text(report, indent=2, default=str))
    return report


def terminal_table(report: dict[str, Any]) -> Table:
    """The comparison as `duo-ai compare` prints it: a row per group and split, the extra metrics
    where any row has them."""
    extra = [key for key in EXTRA_METRICS if any(key in row for row in report["rows"])]
    table = Table(title=f"final evaluation: {report['aggregate']} over seeds [95% interval]")
    for column in ("group", "seeds", "split", "reward", "per run", *extra):
        table.add_column(column.replace("_", " "), justify="left" if column in ("group", "split") else "right")
    for row in report["rows"]:
        cells = [row["group"], ",".join(map(str, row["seeds"])), row["split"], _cell(row["reward_mean"])]
        cells.append(", ".join(f"{v:.3g}" for v in row["reward_mean"]["per_run"]))
        cells += [_cell(row[key]) if key in row else "-" for key in extra]
        table.add_row(*cells)
    return table


def _cell(value: dict[str, Any]) -> str:
    if value["high"] > value["low"]:
        return f"{value['estimate']:.3g} [{value['low']:.3g}, {value['high']:.3g}]"
    return f"{value['estimate']:.3g}"
