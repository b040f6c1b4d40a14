"""`duo-ai plot`: learning curves from run folders, seeds of one experiment pooled into a band.

Each group of runs (runs that differ only in their seed) gives one line per source: training
(`progress.csv`) and each evaluation split (`eval.csv`). At every step logged by all the group's
runs, the line is the mean (or IQM) over seeds and the band its 95% bootstrap interval; a single
run's evaluation band is the 95% interval over its episodes (`reward_ci95`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from duo_ai.core.errors import ConfigError
from duo_ai.core.files import atomic_write
from duo_ai.logger import EVAL_COLUMNS, PROGRESS_COLUMNS
from duo_ai.reports import check_output, require
from duo_ai.reports.records import Group, Run, group_runs, load_runs
from duo_ai.reports.stats import AGGREGATES, bootstrap_ci

SUFFIXES = (".png", ".svg")
WIDTH, HEIGHT, DPI = 9.0, 5.0, 100  # inches and dots per inch: a 900 x 500 PNG
NOT_METRICS = ("iteration", "step", "time", "timestamp", "split")
TRAIN_METRICS = tuple(c for c in PROGRESS_COLUMNS if c not in NOT_METRICS)
EVAL_METRICS = tuple(c for c in EVAL_COLUMNS if c not in NOT_METRICS)
# --metric return: the training return and the evaluation return, on one axis.
DEFAULT_METRIC = "return"
AXIS_LABELS = {
    "return": "episode return (game score)",
    "episode_return": "episode return (game score)",
    "reward_mean": "episode return (game score)",
    "episode_length": "episode length (steps)",
    "episode_length_mean": "episode length (steps)",
    "sps": "environment steps per second",
    "learning_rate": "learning rate",
    "entropy": "policy entropy (nats)",
    "approx_kl": "approximate KL divergence (nats)",
    "clip_fraction": "fraction of samples clipped",
    "rollout_seconds": "rollout time per iteration (s)",
    "update_seconds": "update time per iteration (s)",
    "base_reward_mean": "game score per episode, without costs",
    "expert_fraction": "fraction of steps the expert acted",
    "reward_std": "std of episode return (game score)",
    "reward_ci95": "95% interval half-width (game score)",
}
LINE_STYLES = ("--", ":", "-.")


@dataclass
class Series:
    """One line of the plot: steps and the estimate with its band."""

    label: str
    group: int
    source: str  # "train" or the evaluation split
    steps: np.ndarray
    estimate: np.ndarray
    low: np.ndarray
    high: np.ndarray


def metric_columns(metric: str) -> tuple[str | None, str | None]:
    """The progress.csv and eval.csv columns a metric name plots (one of them may be None)."""
    if metric == DEFAULT_METRIC:
        return "episode_return", "reward_mean"
    if metric in TRAIN_METRICS or metric in EVAL_METRICS:
        return (metric if metric in TRAIN_METRICS else None), (metric if metric in EVAL_METRICS else None)
    known = ", ".join((DEFAULT_METRIC, *TRAIN_METRICS, *EVAL_METRICS))
    raise ConfigError(f"unknown --metric {metric!r}; choose one of: {known}")


def run_curve(run: Run, column: str, split: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Sorted steps and finite values of one column of a run (`split`: evaluation rows of that split).

    A step logged twice (the stretch after a checkpoint, re-run on resume) keeps its last value.
    """
    table = run.progress if split is None else run.evals
    steps, values = table["step"], table[column]
    keep = np.isfinite(values) & np.isfinite(steps)
    if split is not None:
        keep &= table["split"] == split
    steps, values = steps[keep], values[keep]
    order = np.argsort(steps, kind="stable")
    steps, values = steps[order], values[order]
    last = np.r_[steps[1:] != steps[:-1], True] if len(steps) else np.zeros(0, dtype=bool)
    return steps[last], values[last]


def group_series(group: Group, index: int, column: str, split: str | None, aggregate: str) -> Series | None:
    """The group's line: the aggregate over seeds at the steps every run logged."""
    curves = [run_curve(run, column, split) for run in group.runs]
    common = curves[0][0]
    for steps, _ in curves[1:]:
        common = np.intersect1d(common, steps)
    if len(common) == 0:
        return None
    matrix = np.stack([values[np.searchsorted(steps, common)] for steps, values in curves], axis=-1)
    estimate, low, high = bootstrap_ci(matrix, aggregate)
    if len(group.runs) == 1 and column == "reward_mean":  # one run: the interval over its episodes
        steps, half = run_curve(group.runs[0], "reward_ci95", split)
        if np.array_equal(steps, common):
            low, high = estimate - half, estimate + half
    n = len(group.runs)
    seeds = f" ({aggregate} of {n} seeds)" if n > 1 else ""
    source = "train" if split is None else f"eval {split}"
    return Series(f"{group.label}{seeds}: {source}", index, split or "train", common, estimate, low, high)


def build_series(groups: list[Group], metric: str, aggregate: str) -> list[Series]:
    train_column, eval_column = metric_columns(metric)
    series: list[Series] = []
    for index, group in enumerate(groups):
        if train_column is not None:
            series.append(group_series(group, index, train_column, None, aggregate))
        if eval_column is not None:
            splits = sorted({s for run in group.runs for s in run.evals["split"]})
            series += [group_series(group, index, eval_column, split, aggregate) for split in splits]
    return [s for s in series if s is not None]


def describe_runs(runs: list[Run]) -> str:
    """`coinrun, easy mode: PPO agent` (title line)."""
    env = runs[0].config.get("env") or {}
    modes = sorted({str((run.config.get("env") or {}).get("distribution_mode", "?")) for run in runs})
    kinds = sorted(
        {f"coordinator ({run.config.get('policy', {}).get('name')})" if run.is_coordination else "PPO agent"
         for run in runs}
    )  # fmt: skip
    mode = f", {'/'.join(modes)} mode" if env.get("name", "procgen") == "procgen" else ""
    return f"{env.get('task', '?')}{mode}: {', '.join(kinds)}"


def plot_runs(paths: list[Path], out: Path, metric: str = DEFAULT_METRIC, aggregate: str = "mean") -> dict[str, Any]:
    """Check everything, read the runs, draw the curves to `out` (.png or .svg); returns what was drawn."""
    out = check_output(out, SUFFIXES)
    if aggregate not in AGGREGATES:
        raise ConfigError(f"unknown --agg {aggregate!r}; choose one of: {', '.join(AGGREGATES)}")
    metric_columns(metric)
    require("matplotlib", "plot")
    runs = load_runs(paths)
    groups = group_runs(runs)
    series = build_series(groups, metric, aggregate)
    if not series:
        where = ", ".join(str(p) for p in paths)
        raise ConfigError(f"metric {metric!r} was never logged in {where}; pick another --metric")
    name = "episode return" if metric == DEFAULT_METRIC else metric.replace("_", " ")
    title = f"{describe_runs(runs)}\n{name} vs environment steps"
    draw(series, out, title, AXIS_LABELS.get(metric, metric.replace("_", " ")), aggregate, groups)
    return {"output": str(out), "runs": len(runs), "groups": len(groups), "lines": [s.label for s in series]}


def draw(series: list[Series], out: Path, title: str, ylabel: str, aggregate: str, groups: list[Group]) -> None:
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=(WIDTH, HEIGHT), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    splits = sorted({s.source for s in series if s.source != "train"})
    for i, s in enumerate(series):
        color = f"C{(s.group if len(groups) > 1 else i) % 10}"  # a colour per group, or per line of one group
        style = "-" if s.source == "train" else LINE_STYLES[splits.index(s.source) % len(LINE_STYLES)]
        marker = None if s.source == "train" else "o"
        ax.plot(s.steps, s.estimate, style, color=color, marker=marker, markersize=4, label=s.label)
        if len(s.steps) == 1 and np.any(s.high > s.low):  # one point: an error bar, not a band
            yerr = np.stack([s.estimate - s.low, s.high - s.estimate])  # shape [2, 1]: below, above
            ax.errorbar(s.steps, s.estimate, yerr=yerr, color=color, capsize=4, linestyle="none")
        elif np.any(s.high > s.low):
            ax.fill_between(s.steps, s.low, s.high, color=color, alpha=0.18, linewidth=0)
    ax.set_xlabel("environment steps")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: _human(x)))
    ax.grid(alpha=0.3)
    if any(len(g.runs) > 1 for g in groups):
        legend = f"line: {aggregate} over seeds; band: 95% bootstrap interval over seeds"
    else:
        legend = "band: 95% interval over evaluation episodes"
    ax.legend(title=legend, fontsize="small", title_fontsize="small", loc="best")
    atomic_write(out, lambda f: fig.savefig(f, format=out.suffix.lower()[1:], dpi=DPI))


def _human(x: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:g}{suffix}"
    return f"{x:g}"
