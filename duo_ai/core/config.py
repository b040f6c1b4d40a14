"""Experiment configuration: YAML file + dotted overrides -> typed dataclasses.

OmegaConf merges the layers (defaults < YAML < `key=value` overrides) and checks keys and types
against the dataclasses below. `policy` and `algorithm` are validated against the config class of
the policy/algorithm their `name` selects, so each registered class brings its own schema.
The defaults are the CPU quickstart; `configs/quickstart.yaml` spells them out.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from duo_ai.coordination.config import CoordinationConfig
from duo_ai.core.errors import ConfigError
from duo_ai.core.registry import ALGORITHMS, POLICIES


@dataclass
class SplitConfig:
    """Level settings of an evaluation split; unset fields inherit the training settings."""

    distribution_mode: str | None = None
    start_level: int | None = None
    num_levels: int | None = None


@dataclass
class EnvConfig:
    """The training environment. `name` is the family (procgen, gym), `task` the game or env id."""

    name: str = "procgen"
    task: str = "coinrun"
    num_envs: int = 32
    distribution_mode: str = "easy"
    start_level: int = 0
    num_levels: int = 200
    # Procgen engine threads; 0 = one per core.
    num_threads: int = 0
    # Evaluation splits by name; `train` always means the training levels.
    splits: dict[str, SplitConfig] = field(
        default_factory=lambda: {"test": SplitConfig(start_level=100_000, num_levels=0)}
    )


@dataclass
class EvaluationConfig:
    """Evaluation during training (every `algorithm.eval_freq` iterations) and `duo-ai eval` defaults."""

    num_episodes: int = 100
    temperature: float = 1.0
    num_envs: int = 32
    splits: list[str] = field(default_factory=lambda: ["test"])


# The quickstart's PPO settings; the rest are PPOConfig's Procgen-paper defaults.
QUICKSTART_ALGORITHM = {
    "name": "ppo",
    "total_timesteps": 204_800,
    "num_steps": 128,
    "num_minibatches": 4,
    "log_freq": 4,
}


@dataclass
class Config:
    """A whole experiment. Training writes `<experiments_dir>/<name>/`."""

    name: str = "quickstart"
    seed: int = 1
    device: str = "auto"
    # auto = bf16 autocast where the hardware has bf16 units, else fp32.
    precision: str = "auto"
    # Channels-last convs (oneDNN's fast layout): 2.4x the bf16 loop's SPS on CPU, measured.
    channels_last: bool = True
    # torch.compile: measured 2x slower than eager on CPU (inductor); worth trying on CUDA.
    compile: bool = False
    # CPU intra-op threads for torch; 0 = all cores this process may use.
    num_threads: int = 0
    # CPU: keep freed host memory for reuse (glibc) instead of page-faulting it in every minibatch.
    cache_host_memory: bool = True
    overwrite: bool = False
    experiments_dir: str = "experiments"
    env: EnvConfig = field(default_factory=EnvConfig)
    policy: Any = field(default_factory=lambda: {"name": "ppo", "model": "impala_ppo"})
    algorithm: Any = field(default_factory=lambda: dict(QUICKSTART_ALGORITHM))
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    # Coordination runs: novice/expert checkpoints from `duo-ai train` (train_* act in training and
    # simulated validation; test_*, defaulting to train_*, in the other splits) and the costs.
    train_novice: str | None = None
    train_expert: str | None = None
    test_novice: str | None = None
    test_expert: str | None = None
    coordination: CoordinationConfig = field(default_factory=CoordinationConfig)


def _describe(e: OmegaConfBaseException) -> str:
    key = getattr(e, "full_key", None) or getattr(e, "key", None)
    msg = str(getattr(e, "msg", None) or e).strip().splitlines()[0]
    if isinstance(e, ConfigKeyError):
        return f"unknown config key {key!r} ({msg}); check the spelling against configs/quickstart.yaml"
    if isinstance(e, ValidationError):
        return f"bad value for config key {key!r}: {msg}"
    return f"config problem at {key!r}: {msg}" if key else f"config problem: {msg}"


def _merge(*layers: Any) -> DictConfig:
    try:
        return OmegaConf.merge(*layers)
    except OmegaConfBaseException as e:
        raise ConfigError(_describe(e)) from None


def parse_overrides(overrides: list[str]) -> DictConfig:
    """`["algorithm.learning_rate=3e-4", ...]` -> a DictConfig; values are parsed as YAML."""
    bad = [o for o in overrides if "=" not in o or not o.split("=", 1)[0].strip()]
    if bad:
        raise ConfigError(f"override {bad[0]!r} must look like key=value, e.g. env.task=starpilot")
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except OmegaConfBaseException as e:
        raise ConfigError(_describe(e)) from None


def load_yaml(path: str | Path) -> DictConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; pass an existing YAML file (see configs/)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}; fix the syntax there") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping of keys (name:, env:, ...), not a {type(data).__name__}"
        )
    return OmegaConf.create(data)


def _section(node: Any, registry: Any, section: str) -> Any:
    """Validate one `name`-selected section against its class's config dataclass and build it."""
    data = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    if isinstance(data, str):
        data = {"name": data}
    if not isinstance(data, dict) or "name" not in data:
        raise ConfigError(f"config section {section!r} needs a 'name' (one of: {', '.join(registry.names())})")
    config_cls = registry.get(data["name"]).config_cls
    schema = OmegaConf.structured(config_cls)
    try:
        merged = OmegaConf.merge(schema, data)
    except OmegaConfBaseException as e:
        e.full_key = f"{section}.{getattr(e, 'full_key', '') or getattr(e, 'key', '')}"
        raise ConfigError(_describe(e)) from None
    try:
        return config_cls(**OmegaConf.to_container(merged, resolve=True))
    except (TypeError, ValueError, IndexError) as e:
        raise ConfigError(f"config section {section!r}: {e}") from None


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    base: dict[str, Any] | None = None,
) -> Config:
    """Defaults < `base` (e.g. a checkpoint's config) < YAML file < overrides, checked and built."""
    _register_all()
    layers: list[DictConfig] = []
    if base is not None:
        layers.append(OmegaConf.create(base))
    if path is not None:
        layers.append(load_yaml(path))
    layers.append(parse_overrides(list(overrides)))

    defaults = OmegaConf.structured(Config)
    sections = {name: OmegaConf.to_container(defaults[name]) for name in NAMED_SECTIONS}
    plain = []
    for layer in layers:
        layer = layer.copy()
        for name in NAMED_SECTIONS:
            if name in layer:
                sections[name] = _merge_named(sections[name], layer.pop(name), name)
        plain.append(layer)
    merged = _merge(defaults, *plain)
    try:
        config = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        raise ConfigError(_describe(e)) from None
    config.policy = _section(sections["policy"], POLICIES, "policy")
    config.algorithm = _section(sections["algorithm"], ALGORITHMS, "algorithm")
    return config


NAMED_SECTIONS = ("policy", "algorithm")


def _merge_named(current: Any, layer: Any, section: str) -> dict[str, Any]:
    """Merge a layer into a `name`-selected section (policy, algorithm, policy.model).

    A layer naming a different class starts over from that class's defaults; a bare string is a
    name. Nested `model` sections follow the same rule, so `policy.model.hidden_size=128` keeps
    the model named before.
    """
    current = _as_named(current, section)
    update = _as_named(OmegaConf.to_container(layer, resolve=True) if isinstance(layer, DictConfig) else layer, section)
    if "name" in update and update["name"] != current.get("name"):
        return update
    merged = dict(current)
    for key, value in update.items():
        if key == "model":
            merged[key] = _merge_named(current.get(key, {}), value, f"{section}.model")
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = OmegaConf.to_container(OmegaConf.merge(merged[key], value))
        else:
            merged[key] = value
    return merged


def _as_named(value: Any, section: str) -> dict[str, Any]:
    if isinstance(value, str):
        return {"name": value}
    if not isinstance(value, dict):
        raise ConfigError(f"config section {section!r} must be a name or a mapping with a 'name', got {value!r}")
    return dict(value)


def config_to_dict(config: Config) -> dict[str, Any]:
    """The fully resolved config as plain dicts, lists and scalars (for YAML and checkpoints)."""
    return dataclasses.asdict(config)


def config_to_yaml(config: Config) -> str:
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)


def _register_all() -> None:
    """Import the modules whose classes fill the registries."""
    import duo_ai.algorithms  # noqa: F401
    import duo_ai.coordination.baselines  # noqa: F401
    import duo_ai.policies  # noqa: F401
