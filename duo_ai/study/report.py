"""`duo-ai study-report`: the methods of a coordination study side by side, with paired intervals.

It reads a study's evaluations (`duo_ai.study.evals`: every method on the same episodes, at every
weight) and compares the methods per episode, which removes the level-to-level variance that both
methods share:

- per method and weight: the reward mean with its 95% interval over episodes (1.96 x std / sqrt(n)),
  the expert fraction (expert steps / all steps) and the base reward (without costs);
- per method: the area under reward vs cost weight (trapezoid rule) with a 95% percentile-bootstrap
  interval (episode indices resampled with replacement, the same indices at every weight and for
  every method; 2000 resamples, seeded), and the same interval for its difference to the best
  always-agent (the one with the larger AUC);
- at the study weight W: each method's mean per-episode difference to the best always-agent at W
  (the higher mean there) and to the other always-agent, with 1.96 x std(diff) / sqrt(n);
- for each learned coordinator (a method named `ppo*`: `ppo`, `ppo_s2`, ...): its difference to every
  baseline (every other method) at W and in AUC, and to the best baseline at W and by AUC: the
  question a study asks is whether learning beats the best calibrated rule, not only the always-agents.

It writes `table.json` and the figure `reward_vs_cost.png`/`.svg`, and draws the terminal tables.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.markup import escape
from rich.table import Table

from duo_ai.coordination.config import MAX_COST_WEIGHT
from duo_ai.coordination.sweep import trapezoid_auc
from duo_ai.core.checks import Rule, check_options
from duo_ai.core.errors import ConfigError
from duo_ai.core.files import atomic_write, atomic_write_text, check_output_folder, json_text
from duo_ai.reports import require
from duo_ai.reports.stats import bootstrap_ci
from duo_ai.study.evals import MethodEvals, StudyEvals, load_evals
from duo_ai.study.schema import ALWAYS

LEARNED = "ppo"  # methods named ppo, ppo_s<seed>: learned coordinators; every other method is a baseline
Z95 = 1.96
NUM_RESAMPLES, BOOTSTRAP_SEED = 2000, 0
TABLE, FIGURE = "table.json", "reward_vs_cost"
WIDTH, HEIGHT, DPI = 9.0, 5.5, 100  # a 900 x 550 PNG


# -- statistics ----------------------------------------------------------------------------------
def ci95(values: np.ndarray) -> float:
    """Half-width of the normal 95% interval of the mean: 1.96 x std(ddof=1) / sqrt(n); 0 for one value."""
    n = len(values)
    return float(Z95 * np.std(values, ddof=1) / math.sqrt(n)) if n > 1 else 0.0


def paired_diff(a: np.ndarray, b: np.ndarray, against: str) -> dict[str, Any]:
    """Mean of the per-episode differences a - b, its 95% half-width, and whether the interval excludes 0."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    mean, half = float(diff.mean()), ci95(diff)
    return {
        "against": against,
        "mean": mean,
        "ci95": half,
        "low": mean - half,
        "high": mean + half,
        "excludes_zero": bool(mean - half > 0 or mean + half < 0),
    }


def episode_auc(weights: list[float], rewards: np.ndarray) -> np.ndarray:
    """Each episode's trapezoid area over the weights, [num_episodes].

    The AUC of the mean rewards is the mean of these (the trapezoid is linear in the rewards), so
    resampling episodes and recomputing every weight's mean and then the AUC is the same as taking
    the mean of the resampled episode areas.
    """
    dx = np.diff(np.asarray(weights, dtype=np.float64))[:, None]
    return np.sum(dx * (rewards[1:] + rewards[:-1]) / 2, axis=0)


def auc_interval(weights: list[float], rewards: np.ndarray) -> dict[str, float]:
    """AUC of the per-weight mean rewards with its 95% bootstrap interval over episodes (seeded)."""
    value = trapezoid_auc(weights, rewards.mean(axis=1))
    _, low, high = bootstrap_ci(episode_auc(weights, rewards), num_resamples=NUM_RESAMPLES, seed=BOOTSTRAP_SEED)
    return {"value": value, "low": float(low), "high": float(high)}


def auc_diff(weights: list[float], method: MethodEvals, best: MethodEvals) -> dict[str, Any]:
    """AUC difference to `best` with its paired bootstrap interval (the same resampled episodes for both)."""
    value = trapezoid_auc(weights, method.rewards.mean(axis=1)) - trapezoid_auc(weights, best.rewards.mean(axis=1))
    diff = episode_auc(weights, method.rewards) - episode_auc(weights, best.rewards)
    _, low, high = bootstrap_ci(diff, num_resamples=NUM_RESAMPLES, seed=BOOTSTRAP_SEED)
    low, high = float(low), float(high)
    return {"against": best.name, "value": value, "low": low, "high": high, "excludes_zero": low > 0 or high < 0}


def weight_row(method: MethodEvals, k: int, weight: float, root: Path) -> dict[str, Any]:
    rewards = method.rewards[k]
    return {
        "cost_weight": weight,
        "reward_mean": float(rewards.mean()),
        "reward_ci95": ci95(rewards),
        "expert_fraction": float(method.expert_steps[k].sum() / max(method.lengths[k].sum(), 1.0)),
        "base_reward_mean": float(method.base[k].mean()),
        "checkpoint": relative(method.files[k].data["checkpoint"], root),
        "source": relative(method.files[k].path, root),
    }


def relative(path: Any, root: Path) -> str:
    """A path (e.g. the eval JSON's checkpoint) relative to `root`; a relative one is taken from the working folder."""
    return os.path.relpath(os.path.abspath(str(path)), os.path.abspath(root))


def best_always(
    study: StudyEvals, score: Callable[[MethodEvals], float]
) -> tuple[MethodEvals | None, MethodEvals | None]:
    """The always-agent with the highest score, and the runner-up (None where there is none)."""
    ranked = sorted((m for name, m in study.methods.items() if name.startswith(ALWAYS)), key=score, reverse=True)
    return (ranked + [None, None])[0], (ranked + [None, None])[1]


# -- the report ----------------------------------------------------------------------------------
def summarize(study: StudyEvals, weight: float, root: Path) -> dict[str, Any]:
    """table.json's content: per method at the study weight, its AUC, and every weight's row."""
    k = weight_index(study, weight)
    weights = study.weights
    best, other = best_always(study, lambda m: float(m.rewards[k].mean()))
    # One weight (a comparison at the study's weight alone, e.g. on more episodes) has no AUC.
    has_auc = len(weights) > 1
    best_auc = best_always(study, lambda m: trapezoid_auc(weights, m.rewards.mean(axis=1)))[0] if has_auc else None
    per_weight = {name: [weight_row(m, i, w, root) for i, w in enumerate(weights)] for name, m in study.methods.items()}
    methods = {}
    for name, m in study.methods.items():
        row = per_weight[name][k]
        methods[name] = {
            **{key: row[key] for key in ("checkpoint", "reward_mean", "reward_ci95", "expert_fraction")},
            "num_episodes": int(m.rewards.shape[1]),
            "base_reward_mean": row["base_reward_mean"],
            "repriced": m.repriced,
            "diff_vs_best_always": None if best is None else paired_diff(m.rewards[k], best.rewards[k], best.name),
            "diff_vs_other_always": None if other is None else paired_diff(m.rewards[k], other.rewards[k], other.name),
            "auc": auc_interval(weights, m.rewards) if has_auc else None,
            "auc_diff_vs_best_always": None if best_auc is None else auc_diff(weights, m, best_auc),
        }
    baselines = [m for name, m in study.methods.items() if not name.startswith(LEARNED)]
    best_base = max(baselines, key=lambda m: float(m.rewards[k].mean()), default=None)
    best_base_auc = (
        max(baselines, key=lambda m: trapezoid_auc(weights, m.rewards.mean(axis=1)), default=None) if has_auc else None
    )
    for name, m in study.methods.items():
        if not name.startswith(LEARNED) or best_base is None:
            continue
        methods[name].update(
            diff_vs_best_baseline=paired_diff(m.rewards[k], best_base.rewards[k], best_base.name),
            diff_vs_baselines={b.name: paired_diff(m.rewards[k], b.rewards[k], b.name) for b in baselines},
            auc_diff_vs_best_baseline=auc_diff(weights, m, best_base_auc) if has_auc else None,
            auc_diff_vs_baselines={b.name: auc_diff(weights, m, b) for b in baselines} if has_auc else None,
        )
    first = study.first.data
    return {
        "cost_weight": weights[k],
        "env": first["env"],
        "split": first["split"],
        "num_episodes": int(first["num_episodes"]),
        "base_penalty": float(first["base_penalty"]),
        "switch_agent_cost_weight": float(first["switch_agent_cost_weight"]),
        "best_always": None if best is None else best.name,
        "best_always_auc": None if best_auc is None else best_auc.name,
        "best_baseline": None if best_base is None else best_base.name,
        "best_baseline_auc": None if best_base_auc is None else best_base_auc.name,
        "interval": "reward: 1.96 x std / sqrt(n) over episodes; AUC: 95% percentile bootstrap over episodes",
        "bootstrap": {"resamples": NUM_RESAMPLES, "seed": BOOTSTRAP_SEED, "paired": True},
        "evals": relative(study.evals, root),
        "methods": methods,
        "weights": weights,
        "per_weight": per_weight,
    }


def weight_index(study: StudyEvals, weight: float) -> int:
    for k, w in enumerate(study.weights):
        if math.isclose(w, weight, rel_tol=1e-9, abs_tol=1e-12):
            return k
    known = ", ".join(f"{w:g}" for w in study.weights)
    raise ConfigError(f"--weight {weight:g} is not one of the study's cost weights: {known}")


def ranked(table: dict[str, Any]) -> list[str]:
    """Method names by AUC (by reward at the study weight when there is one weight), highest first."""
    methods = table["methods"]
    key = (lambda m: m["auc"]["value"]) if len(table["weights"]) > 1 else (lambda m: m["reward_mean"])
    return sorted(methods, key=lambda name: -key(methods[name]))


def study_report(
    evals: Path, weight: float, out_dir: Path, root: Path | None = None, weights: list[float] | None = None
) -> dict[str, Any]:
    """Check everything, compute the table and draw the figure, then write them to `out_dir`."""
    out_dir = Path(out_dir)
    check_options({"--weight": Rule(ge=0, le=MAX_COST_WEIGHT)}, weight)
    check_output_folder(out_dir, "output folder", (TABLE, f"{FIGURE}.png", f"{FIGURE}.svg"))
    here, there = out_dir.resolve(), Path(evals).resolve()
    method = here.relative_to(there).parts[0] if here.is_relative_to(there) and here != there else None
    if method is not None and any((there / method).glob("w*.json")):  # a folder of its own there is skipped
        raise ConfigError(
            f"output folder {out_dir} is in method {method}'s evaluations, which the report would then leave "
            f"out; pass a folder of its own, e.g. -o {Path(evals).parent / 'report'}"
        )
    if root is not None and not Path(root).is_dir():
        raise ConfigError(f"--root {root} is not a folder; pass the study folder the checkpoint paths are under")
    require("matplotlib", "study-report")
    study = load_evals(Path(evals), skip=out_dir, weights=weights)
    table = summarize(study, weight, Path(root) if root is not None else out_dir)
    images = {suffix: render(table, suffix) for suffix in ("png", "svg")}
    out_dir.mkdir(exist_ok=True)
    atomic_write_text(out_dir / TABLE, json_text(table, indent=2) + "\n")
    for suffix, data in images.items():
        atomic_write(out_dir / f"{FIGURE}.{suffix}", lambda f, data=data: f.write(data))
    table["outputs"] = [str(out_dir / TABLE), *(str(out_dir / f"{FIGURE}.{s}") for s in images)]
    return table


def render(table: dict[str, Any], fmt: str) -> bytes:
    """Reward (with costs) against cost weight: a line and 95% band per method, the study weight marked."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH, HEIGHT), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    weights = np.asarray(table["weights"])
    for i, name in enumerate(ranked(table)):
        rows = table["per_weight"][name]
        mean = np.array([r["reward_mean"] for r in rows])
        half = np.array([r["reward_ci95"] for r in rows])
        color, style = f"C{i % 10}", "--" if name.startswith(ALWAYS) else "-"
        auc = table["methods"][name]["auc"]
        label = name if auc is None else f"{name} (AUC {auc['value']:.3g})"
        ax.plot(weights, mean, style, color=color, marker="o", markersize=4, label=label)
        ax.fill_between(weights, mean - half, mean + half, color=color, alpha=0.15, linewidth=0)
    ax.axvline(table["cost_weight"], color="0.4", linestyle=":", label=f"study weight {table['cost_weight']:g}")
    ax.set_xticks(weights, [f"{w:g}" for w in weights])
    ax.set_xlabel("expert-query cost weight")
    ax.set_ylabel("test reward (with costs)" if table["split"] == "test" else f"{table['split']} reward (with costs)")
    ax.set_title(
        f"{table['env']}, {table['split']} levels, {table['num_episodes']} paired episodes per point: "
        f"reward vs expert-query cost"
    )
    ax.grid(alpha=0.3)
    ax.legend(title="band: 95% interval over episodes", fontsize="small", title_fontsize="small", loc="best")
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=DPI)
    return buffer.getvalue()


# -- the terminal tables -------------------------------------------------------------------------
def terminal_tables(table: dict[str, Any]) -> list[Table]:
    """The report as `duo-ai study-report` prints it: every method ranked, then (where the study has
    learned coordinators) each one against the best baseline."""
    return [methods_table(table), *([] if (versus := learned_table(table)) is None else [versus])]


def methods_table(table: dict[str, Any]) -> Table:
    """Each method at the study weight: reward, expert fraction, difference to the best always-agent, AUC."""
    w, best = f"{table['cost_weight']:g}", table["best_always"]
    rows = []
    for name in ranked(table):
        m = table["methods"][name]
        auc = m["auc"]
        rows.append(
            (
                escape(name),
                f"{m['reward_mean']:.3g} ± {m['reward_ci95']:.2g}",
                f"{m['expert_fraction']:.1%}",
                diff_cell(m["diff_vs_best_always"]),
                "-" if auc is None else f"{auc['value']:.3g} [{auc['low']:.3g}, {auc['high']:.3g}]",
            )
        )
    weights_text = ", ".join(f"{x:g}" for x in table["weights"])
    report = Table(
        title=escape(f"{table['env']} / {table['split']}: {table['num_episodes']} paired episodes, cost weight {w}"),
        caption=escape(
            (f"ranked by AUC over weights {weights_text} [95% bootstrap]; " if len(table["weights"]) > 1 else "")
            + "diff: paired, per episode; * = its 95% interval excludes 0"
        ),
    )
    columns = ("method", f"reward at {w}\n± 95%", "expert\nfraction", f"diff vs\n{best or 'always'}", "AUC\n[95%]")
    for i, column in enumerate(columns):
        width = max(len(row[i]) for row in rows) if i else None  # numbers are never wrapped
        report.add_column(escape(column), justify="right" if i else "left", min_width=width)
    for row in rows:
        report.add_row(*row)
    return report


def learned_table(table: dict[str, Any]) -> Table | None:
    """Each learned coordinator against the best baseline, at the study weight and in AUC (None: none learned)."""
    learned = [name for name in ranked(table) if "diff_vs_best_baseline" in table["methods"][name]]
    if not learned:
        return None
    versus = Table(caption="paired; * = its 95% interval excludes 0")
    versus.add_column("learned")
    w = f"{table['cost_weight']:g}"
    versus.add_column(escape(f"diff vs best baseline\nat {w} ({table['best_baseline']})"), justify="right")
    versus.add_column(escape(f"AUC diff vs best\nbaseline ({table['best_baseline_auc']})"), justify="right")
    for name in learned:
        method = table["methods"][name]
        auc = method["auc_diff_vs_best_baseline"]
        auc_cell = "-" if auc is None else f"{auc['value']:+.3g} [{auc['low']:+.3g}, {auc['high']:+.3g}]"
        auc_cell += "*" * bool(auc and auc["excludes_zero"])
        versus.add_row(escape(name), escape(diff_cell(method["diff_vs_best_baseline"])), escape(auc_cell))
    return versus


def diff_cell(diff: dict[str, Any] | None) -> str:
    """A paired difference as `+mean ± half-width`, starred when its interval excludes 0; '-' for none."""
    return "-" if diff is None else f"{diff['mean']:+.3g} ± {diff['ci95']:.2g}" + "*" * diff["excludes_zero"]
