"""The experiment config: YAML files + dotted overrides -> one `Config` of typed dataclasses.

Layers, later ones winning: the dataclass defaults (the CPU quickstart, spelled out in
`configs/quickstart.yaml`) < a base (a checkpoint's stored config) < each YAML file given (each
after its own `defaults:` bases) < `key=value` overrides. OmegaConf checks keys and types against
the dataclasses. `policy` and `algorithm` are checked against the config class of the
policy/algorithm their `name` selects, so each registered class brings its own schema.

Validation happens here and nowhere else: every problem is a one-line `ConfigError`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import duo_ai.algorithms  # noqa: F401  (fills ALGORITHMS)
import duo_ai.coordination.baselines  # noqa: F401  (fills POLICIES and ALGORITHMS with the baselines)
import duo_ai.policies  # noqa: F401  (fills POLICIES)
from duo_ai.coordination.config import CoordinationConfig
from duo_ai.core.config_files import describe, load_yaml_layers, merge, parse_overrides
from duo_ai.core.errors import ConfigError
from duo_ai.core.registry import ALGORITHMS, POLICIES, Registry
from duo_ai.envs.config import EnvConfig


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
    # Rolling checkpoints kept under <run>/checkpoints/ (last.ckpt names the newest).
    keep_checkpoints: int = 3
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


# Sections whose schema is chosen by their `name` field, and the registry that maps it to a class.
NAMED_SECTIONS: dict[str, Registry] = {"policy": POLICIES, "algorithm": ALGORITHMS}


def load_config(
    paths: str | Path | list[str | Path] | tuple[str | Path, ...] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    base: dict[str, Any] | None = None,
) -> Config:
    """Defaults < `base` (e.g. a checkpoint's config) < YAML files in order < overrides, checked and built."""
    if paths is None:
        paths = []
    elif isinstance(paths, (str, Path)):
        paths = [paths]
    layers: list[Any] = [] if base is None else [base]
    for path in paths:
        layers.extend(load_yaml_layers(path))
    layers.append(parse_overrides(list(overrides)))
    return build_config(layers)


def build_config(layers: list[Any]) -> Config:
    """Merge config layers (dicts or DictConfigs) over the defaults and validate the result."""
    defaults = OmegaConf.structured(Config)
    sections = {name: OmegaConf.to_container(defaults[name]) for name in NAMED_SECTIONS}
    plain = []
    for layer in layers:
        layer = OmegaConf.create(layer) if not isinstance(layer, DictConfig) else layer.copy()
        for name in NAMED_SECTIONS:
            if name in layer:
                sections[name] = merge_named(sections[name], layer.pop(name), name)
        plain.append(layer)
    merged = merge(defaults, *plain)
    try:
        config = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        raise ConfigError(describe(e)) from None
    except (TypeError, ValueError, IndexError) as e:  # a section's own __post_init__ check
        raise ConfigError(f"config: {e}") from None
    for name, registry in NAMED_SECTIONS.items():
        setattr(config, name, build_named(sections[name], registry, name))
    return config


def build_named(data: dict[str, Any], registry: Registry, section: str) -> Any:
    """Validate one `name`-selected section against its class's config dataclass and build it."""
    if "name" not in data:
        raise ConfigError(f"config section {section!r} needs a 'name' (one of: {', '.join(registry.names())})")
    config_cls = registry.get(data["name"]).config_cls
    try:
        merged = OmegaConf.merge(OmegaConf.structured(config_cls), data)
    except OmegaConfBaseException as e:
        e.full_key = f"{section}.{getattr(e, 'full_key', '') or getattr(e, 'key', '')}"
        raise ConfigError(describe(e)) from None
    try:
        return config_cls(**OmegaConf.to_container(merged, resolve=True))
    except (TypeError, ValueError, IndexError) as e:
        raise ConfigError(f"config section {section!r}: {e}") from None


def merge_named(current: Any, layer: Any, section: str) -> dict[str, Any]:
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
            merged[key] = merge_named(current.get(key, {}), value, f"{section}.model")
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
