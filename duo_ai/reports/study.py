"""`duo-ai study-report`: the methods of a coordination study side by side, with paired intervals.

A study's evaluations lie in `EVALS/<method>/w<weight>.json` (weight written `f"{w:g}"`), one
`duo-ai eval --json` per coordinator method and expert-query cost weight, every one on the same
levels in the same order: episode j of every file is the same level, in the same env slot. So the
comparisons are paired per episode, which removes the level-to-level variance that both methods
share:

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

An always-agent's episodes do not depend on the weight, so a method named `always_*` with a single
file is re-priced to every weight: reward = base reward - (w x expert steps + switch cost weight x
switches) x base penalty, per episode. Any other method needs a file at every weight.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from duo_ai.coordination.sweep import COST_WEIGHTS, trapezoid_auc
from duo_ai.core.checks import Rule, check_options
from duo_ai.core.errors import ConfigError
from duo_ai.core.files import atomic_write, atomic_write_text, check_output_folder
from duo_ai.reports import read_json, require
from duo_ai.reports.stats import bootstrap_ci

ARRAYS = {  # eval JSON key -> EvalFile attribute
    "episode_returns": "returns",
    "episode_base_rewards": "base",
    "episode_expert_steps": "expert_steps",
    "episode_lengths": "lengths",
    "episode_switches": "switches",
    "episode_level_seeds": "level_seeds",
}
SCALARS = ("split", "num_episodes", "cost_weight", "base_penalty", "switch_agent_cost_weight", "env", "checkpoint")
ALWAYS = "always_"
LEARNED = "ppo"  # methods named ppo, ppo_s<seed>: learned coordinators; every other method is a baseline
FILE_NAME = re.compile(r"^w(.+)\.json$")
Z95 = 1.96
NUM_RESAMPLES, BOOTSTRAP_SEED = 2000, 0
TABLE, FIGURE = "table.json", "reward_vs_cost"
WIDTH, HEIGHT, DPI = 9.0, 5.5, 100  # a 900 x 550 PNG


@dataclass
class EvalFile:
    """One `duo-ai eval --json` of a method at a cost weight, its per-episode arrays as float64."""

    path: Path
    method: str
    weight: float
    data: dict[str, Any]
    returns: np.ndarray = field(repr=False)
    base: np.ndarray = field(repr=False)
    expert_steps: np.ndarray = field(repr=False)
    lengths: np.ndarray = field(repr=False)
    switches: np.ndarray = field(repr=False)
    level_seeds: np.ndarray = field(repr=False)

    def repriced(self, weight: float) -> np.ndarray:
        """Each episode's reward had the expert-query cost weight been `weight`."""
        cost = weight * self.expert_steps + float(self.data["switch_agent_cost_weight"]) * self.switches
        return self.base - cost * float(self.data["base_penalty"])


@dataclass
class Method:
    """A method's episodes at every study weight: arrays [num_weights, num_episodes]."""

    name: str
    rewards: np.ndarray
    base: np.ndarray
    expert_steps: np.ndarray
    lengths: np.ndarray
    files: list[EvalFile]  # the file behind each weight (the same one, re-priced, for an always-agent)

    @property
    def repriced(self) -> bool:
        return len({id(f) for f in self.files}) == 1 and len(self.files) > 1


@dataclass
class Study:
    evals: Path
    weights: list[float]
    methods: dict[str, Method]

    @property
    def first(self) -> EvalFile:
        return next(iter(self.methods.values())).files[0]


# -- reading -------------------------------------------------------------------------------------
def find_files(evals: Path, skip: Path | None = None) -> dict[str, dict[float, Path]]:
    """`{method: {weight: path}}` from EVALS/<method>/w<weight>.json (`skip`: a folder to pass over)."""
    if not evals.is_dir():
        raise ConfigError(f"EVALS {evals} is not a folder; pass the folder that holds <method>/w<weight>.json")
    folders = [
        p for p in sorted(evals.iterdir())
        if p.is_dir() and not p.name.startswith(".") and (skip is None or p.resolve() != skip.resolve())
    ]  # fmt: skip
    if not folders:
        raise ConfigError(f"EVALS {evals} holds no method folders; expected {evals}/<method>/w<weight>.json")
    found: dict[str, dict[float, Path]] = {}
    for folder in folders:
        found[folder.name] = {}
        for path in sorted(folder.glob("*.json")):
            weight = _file_weight(path)
            if weight in found[folder.name]:
                raise ConfigError(f"{path} and {found[folder.name][weight]} are both for cost weight {weight:g}")
            found[folder.name][weight] = path
        if not found[folder.name]:
            raise ConfigError(f"method folder {folder} has no w<weight>.json evaluation (e.g. w0.4.json)")
    return found


def _file_weight(path: Path) -> float:
    match = FILE_NAME.match(path.name)
    try:
        weight = float(match.group(1)) if match else math.nan
    except ValueError:
        weight = math.nan
    if not (math.isfinite(weight) and weight >= 0):
        raise ConfigError(f"{path}: name it w<cost weight>.json, e.g. w0.4.json (the weight as f'{{w:g}}')")
    return weight


def read_eval(path: Path, method: str, weight: float) -> EvalFile:
    """Parse one evaluation JSON and check that it has what a study needs, consistently."""
    data = read_json(path, "re-run duo-ai eval --json")
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a duo-ai eval --json file (not a JSON object)")
    missing = [key for key in (*SCALARS, *ARRAYS) if key not in data]
    if missing:
        raise ConfigError(f"{path} lacks {', '.join(missing)}; re-evaluate with the current duo-ai eval --json")
    n = data["num_episodes"]
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"{path}: num_episodes is {n!r}; expected a whole number >= 1")
    for key in ("split", "env", "checkpoint"):
        if not isinstance(data[key], str):
            raise ConfigError(f"{path}: {key} is {data[key]!r}; expected a string")
    for key in ("cost_weight", "base_penalty", "switch_agent_cost_weight"):
        if not _is_number(data[key]):
            raise ConfigError(f"{path}: {key} is {data[key]!r}; expected a finite number")
    if not math.isclose(float(data["cost_weight"]), weight, rel_tol=1e-9, abs_tol=1e-12):
        raise ConfigError(f"{path}: its cost_weight is {data['cost_weight']:g}, but the file is named for {weight:g}")
    arrays = {attr: _array(path, data, key, n) for key, attr in ARRAYS.items()}
    if not np.array_equal(arrays["level_seeds"], np.round(arrays["level_seeds"])):
        raise ConfigError(f"{path}: episode_level_seeds must be whole numbers (Procgen level seeds)")
    return EvalFile(path, method, weight, data, **arrays)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _array(path: Path, data: dict[str, Any], key: str, n: int) -> np.ndarray:
    values = data[key]
    if not isinstance(values, list) or not all(_is_number(v) for v in values):
        raise ConfigError(f"{path}: {key} must be a list of finite numbers")
    if len(values) != n:
        raise ConfigError(f"{path}: {key} has {len(values)} values but num_episodes is {n}")
    return np.asarray(values, dtype=np.float64)


# -- pairing -------------------------------------------------------------------------------------
def check_study(files: list[EvalFile]) -> None:
    """Every file on the same split, game, episodes and levels, at the same cost unit: else name the odd one."""
    _same(files, lambda f: f.data["split"], "split")
    _same(files, lambda f: f.data["env"], "env")
    _same(files, lambda f: f.data["num_episodes"], "num_episodes")
    _same(files, lambda f: float(f.data["base_penalty"]), "base_penalty")
    _same(files, lambda f: float(f.data["switch_agent_cost_weight"]), "switch_agent_cost_weight")
    reference = _majority(files, lambda f: tuple(f.level_seeds.tolist()))
    for f in files:
        differ = np.flatnonzero(f.level_seeds != reference.level_seeds)
        if len(differ):
            j = int(differ[0])
            raise ConfigError(
                f"{f.path} breaks the pairing: its episode {j} is level {int(f.level_seeds[j])}, but level "
                f"{int(reference.level_seeds[j])} in {reference.path}; evaluate every method with the same "
                f"--split, --episodes, --seed and evaluation.num_envs"
            )


def _majority(files: list[EvalFile], key: Callable[[EvalFile], Any]) -> EvalFile:
    """The first file holding the most common value of `key` (so the file named is the odd one out)."""
    common = Counter(key(f) for f in files).most_common(1)[0][0]
    return next(f for f in files if key(f) == common)


def _same(files: list[EvalFile], key: Callable[[EvalFile], Any], name: str) -> None:
    reference = _majority(files, key)
    for f in files:
        if key(f) != key(reference):
            raise ConfigError(
                f"{f.path} breaks the pairing: {name} is {key(f)!r}, but {key(reference)!r} in {reference.path}"
            )


# -- the study -----------------------------------------------------------------------------------
def study_weights(found: dict[str, dict[float, Path]]) -> list[float]:
    """Every weight some file was evaluated at, re-priced always-agents aside (COST_WEIGHTS if none)."""
    weights = sorted({w for method, files in found.items() if not _repriced(method, files) for w in files})
    return weights or list(COST_WEIGHTS)


def parse_weights(text: str) -> list[float]:
    """`"0,0.2,1"` -> [0.0, 0.2, 1.0]: distinct finite weights >= 0, sorted (one weight: no AUC)."""
    try:
        weights = sorted(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        weights = []
    if not weights or len(set(weights)) != len(weights) or not all(math.isfinite(w) and w >= 0 for w in weights):
        raise ConfigError(f"--weights takes distinct comma-separated weights >= 0 (e.g. 0,0.5,1): {text!r}")
    return weights


def _repriced(method: str, files: dict[float, Path]) -> bool:
    return method.startswith(ALWAYS) and len(files) == 1


def check_complete(found: dict[str, dict[float, Path]], weights: list[float]) -> None:
    missing = [
        f"{method} at {', '.join(f'w{w:g}' for w in weights if w not in files)}"
        for method, files in found.items()
        if not _repriced(method, files) and any(w not in files for w in weights)
    ]
    if missing:
        raise ConfigError(
            f"missing evaluations: {'; '.join(missing)} (a method needs a file per weight "
            f"{', '.join(f'{w:g}' for w in weights)}; only a single always_* file is re-priced)"
        )


def assemble(name: str, files: list[EvalFile], weights: list[float]) -> Method:
    """A method's [weights, episodes] arrays: its files in weight order, or its one file re-priced."""
    if _repriced(name, {f.weight: f.path for f in files}):
        (only,) = files
        check_reprice(only)
        files = [only] * len(weights)
        rewards = np.stack([only.repriced(w) for w in weights])
    else:
        by_weight = {f.weight: f for f in files}
        files = [by_weight[w] for w in weights]
        rewards = np.stack([f.returns for f in files])
    stack = lambda attr: np.stack([getattr(f, attr) for f in files])  # noqa: E731
    return Method(name, rewards, stack("base"), stack("expert_steps"), stack("lengths"), files)


def check_reprice(f: EvalFile) -> None:
    """Re-pricing is exact only if the file's own rewards are its base rewards less the costs at its weight."""
    expected = f.repriced(f.weight)
    bad = np.flatnonzero(~np.isclose(f.returns, expected, rtol=1e-5, atol=1e-3))
    if len(bad):
        j = int(bad[0])
        raise ConfigError(
            f"{f.path} cannot be re-priced to other weights: episode {j} has return {f.returns[j]:g}, but base "
            f"reward - (cost_weight x expert steps + switch cost x switches) x base_penalty is {expected[j]:g}"
        )


def load_study(evals: Path, skip: Path | None = None, weights: list[float] | None = None) -> Study:
    """Read and check every evaluation of the study (pairing, completeness) into per-method arrays.

    `weights`: the study's cost weights; default: every weight some method has a file for.
    """
    found = find_files(Path(evals), skip)
    files = {m: [read_eval(p, m, w) for w, p in sorted(paths.items())] for m, paths in found.items()}
    check_study([f for fs in files.values() for f in fs])
    weights = study_weights(found) if weights is None else weights
    check_complete(found, weights)
    return Study(Path(evals), weights, {m: assemble(m, fs, weights) for m, fs in files.items()})


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


def auc_diff(weights: list[float], method: Method, best: Method) -> dict[str, Any]:
    """AUC difference to `best` with its paired bootstrap interval (the same resampled episodes for both)."""
    value = trapezoid_auc(weights, method.rewards.mean(axis=1)) - trapezoid_auc(weights, best.rewards.mean(axis=1))
    diff = episode_auc(weights, method.rewards) - episode_auc(weights, best.rewards)
    _, low, high = bootstrap_ci(diff, num_resamples=NUM_RESAMPLES, seed=BOOTSTRAP_SEED)
    low, high = float(low), float(high)
    return {"against": best.name, "value": value, "low": low, "high": high, "excludes_zero": low > 0 or high < 0}


def weight_row(method: Method, k: int, weight: float, root: Path) -> dict[str, Any]:
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


def best_always(study: Study, score: Callable[[Method], float]) -> tuple[Method | None, Method | None]:
    """The always-agent with the highest score, and the runner-up (None where there is none)."""
    ranked = sorted((m for name, m in study.methods.items() if name.startswith(ALWAYS)), key=score, reverse=True)
    return (ranked + [None, None])[0], (ranked + [None, None])[1]


# -- the report ----------------------------------------------------------------------------------
def summarize(study: Study, weight: float, root: Path) -> dict[str, Any]:
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


def weight_index(study: Study, weight: float) -> int:
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
    check_options({"--weight": Rule(ge=0)}, weight)
    check_output_folder(out_dir, "output folder", (TABLE, f"{FIGURE}.png", f"{FIGURE}.svg"))
    require("matplotlib", "study-report")
    study = load_study(Path(evals), skip=out_dir, weights=weights)
    table = summarize(study, weight, Path(root) if root is not None else out_dir)
    images = {suffix: render(table, suffix) for suffix in ("png", "svg")}
    out_dir.mkdir(exist_ok=True)
    atomic_write_text(out_dir / TABLE, json.dumps(table, indent=2) + "\n")
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
