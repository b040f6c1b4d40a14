"""A coordination study's evaluations, read and checked for pairing: what `duo-ai study-report` reports.

A study's evaluations lie in `EVALS/<method>/w<weight>.json` (weight written as `weight_name` writes
it), one `duo-ai eval --json` per coordinator method and expert-query cost weight, every one on the
same levels in the same order: episode j of every file is the same level, in the same env slot, so
the report compares methods per episode. `load_evals` reads them all, refuses (in one line, naming
the odd file) any that breaks the pairing, and stacks each method's episodes per weight.

An always-agent's episodes do not depend on the weight, so a method named `always_*` with a single
file is re-priced to every weight (`duo_ai.coordination.sweep.reprice`, per episode). Any other
method needs a file at every weight.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from duo_ai.coordination.config import MAX_COST_WEIGHT
from duo_ai.coordination.sweep import COST_WEIGHTS, reprice
from duo_ai.core.errors import ConfigError
from duo_ai.reports import read_json
from duo_ai.study.schema import ALWAYS

ARRAYS = {  # eval JSON key -> EvalFile attribute
    "episode_returns": "returns",
    "episode_base_rewards": "base",
    "episode_expert_steps": "expert_steps",
    "episode_lengths": "lengths",
    "episode_switches": "switches",
    "episode_level_seeds": "level_seeds",
}
SCALARS = ("split", "num_episodes", "cost_weight", "base_penalty", "switch_agent_cost_weight", "env", "checkpoint")
FILE_NAME = re.compile(r"^w(.+)\.json$")


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
        data = self.data
        switch_weight, base_penalty = float(data["switch_agent_cost_weight"]), float(data["base_penalty"])
        return reprice(self.base, self.expert_steps, self.switches, weight, switch_weight, base_penalty)


@dataclass
class MethodEvals:
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
class StudyEvals:
    """Every method's evaluations of one study (the folder `evals`), paired, at the study's `weights`."""

    evals: Path
    weights: list[float]
    methods: dict[str, MethodEvals]

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
def check_pairing(files: list[EvalFile]) -> None:
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
    if not weights or len(set(weights)) != len(weights) or not all(0 <= w <= MAX_COST_WEIGHT for w in weights):
        raise ConfigError(
            f"--weights takes distinct comma-separated weights in [0, {MAX_COST_WEIGHT:.0f}] (e.g. 0,0.5,1): {text!r}"
        )
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


def assemble(name: str, files: list[EvalFile], weights: list[float]) -> MethodEvals:
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
    return MethodEvals(name, rewards, stack("base"), stack("expert_steps"), stack("lengths"), files)


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


def load_evals(evals: Path, skip: Path | None = None, weights: list[float] | None = None) -> StudyEvals:
    """Read and check every evaluation of the study (pairing, completeness) into per-method arrays.

    `weights`: the study's cost weights; default: every weight some method has a file for.
    """
    found = find_files(Path(evals), skip)
    files = {m: [read_eval(p, m, w) for w, p in sorted(paths.items())] for m, paths in found.items()}
    check_pairing([f for fs in files.values() for f in fs])
    weights = study_weights(found) if weights is None else weights
    check_complete(found, weights)
    return StudyEvals(Path(evals), weights, {m: assemble(m, fs, weights) for m, fs in files.items()})
