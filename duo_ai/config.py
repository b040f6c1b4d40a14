"""The experiment config: YAML files + dotted overrides -> one `Config` of typed dataclasses.

Layers, later ones winning: the dataclass defaults (the CPU quickstart, spelled out in
`configs/quickstart.yaml`) < a base (a checkpoint's stored config) < each YAML file given (each
after its own `defaults:` bases) < `key=value` overrides. OmegaConf checks keys and types against
the dataclasses. `policy` and `algorithm` are checked against the config class of the
policy/algorithm their `name` selects, so each registered class brings its own schema.

Validation happens here and nowhere else: every problem is a one-line `ConfigError`. Each field's
allowed values are declared beside its default (`duo_ai.core.checks.checked`) and checked by one
walk over the built config, with the dotted key in the message; `check_run` adds the checks that
span sections: split names and levels here, and the rules each algorithm, policy or model class
states in its config's `SectionChecks` hooks (PPO's minibatches, calibration's split), so this
module knows no algorithm by name.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import duo_ai.algorithms  # noqa: F401  (fills ALGORITHMS)
import duo_ai.coordination.baselines  # noqa: F401  (fills POLICIES and ALGORITHMS with the baselines)
import duo_ai.policies  # noqa: F401  (fills POLICIES)
from duo_ai.coordination.config import CoordinationConfig, is_coordination_run
from duo_ai.core.checks import INT32_MAX, check_config, checked
from duo_ai.core.compute import PRECISIONS
from duo_ai.core.config_files import describe, load_yaml_layers, merge, parse_overrides, without_keys
from duo_ai.core.errors import ConfigError
from duo_ai.core.registry import ALGORITHMS, POLICIES, Registry
from duo_ai.envs import check_split_name, env_family, split_config
from duo_ai.envs.config import EnvConfig

# File systems allow 255 bytes per name; a run folder moved aside gets a timestamp suffix, so keep room.
MAX_NAME_BYTES = 200
PLAIN_NAME = (
    f"a plain folder name of at most {MAX_NAME_BYTES} bytes (no '/' nor control characters, not '.', '..', "
    "empty or starting with '.')"
)


def is_plain_name(name: str) -> bool:
    """A run name is one folder inside experiments_dir: no path separators, no '.'/'..', not hidden."""
    plain = name.isprintable() and not name.startswith(".") and not any(c in name for c in "/\\")
    return bool(name.strip()) and plain and len(name.encode()) <= MAX_NAME_BYTES


def is_device_name(device: str) -> bool:
    return re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", device) is not None


# More evaluation episodes than any study uses (a 4,000-episode confirmation is a large one): a typo, not a plan.
MAX_EPISODES = 1_000_000


@dataclass
class EvaluationConfig:
    """Evaluation during training (every `algorithm.eval_freq` iterations) and `duo-ai eval` defaults."""

    # 0 = no evaluation during training.
    num_episodes: int = checked(100, ge=0, le=MAX_EPISODES)
    temperature: float = checked(1.0, ge=0)
    num_envs: int = checked(32, ge=1)
    # Each `train` or a split of env.splits (checked with the whole config, in `check_run`).
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

    # The run folder's name: a plain folder name inside experiments_dir.
    name: str = checked("quickstart", test=is_plain_name, allowed=PLAIN_NAME)
    seed: int = checked(1, ge=0, le=INT32_MAX)
    device: str = checked("auto", test=is_device_name, allowed="auto, cpu, mps, cuda or cuda:N")
    # auto = bf16 autocast where the hardware has bf16 units, else fp32.
    precision: str = checked("auto", choices=PRECISIONS)
    # Channels-last convs (oneDNN's fast layout): 2.4x the bf16 loop's SPS on CPU, measured.
    channels_last: bool = True
    # torch.compile: measured 2x slower than eager on CPU (inductor); worth trying on CUDA.
    compile: bool = False
    # CPU intra-op threads for torch; 0 = all cores this process may use.
    num_threads: int = checked(0, ge=0)
    # CPU: keep freed host memory for reuse (glibc) instead of page-faulting it in every minibatch.
    cache_host_memory: bool = True
    # Replace an existing run folder of the same name (the old one is kept until the new run's first checkpoint).
    overwrite: bool = False
    # Rolling checkpoints kept under <run>/checkpoints/ (last.ckpt names the newest).
    keep_checkpoints: int = checked(3, ge=1)
    experiments_dir: str = checked("experiments", test=bool, allowed="a folder path")
    # Data-parallel runs (torchrun): the longest wait for the rendezvous or any collective, in seconds.
    distributed_timeout_s: float = checked(300.0, gt=0)
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
# Keys whose value is a class's name or a mapping with a `name` (see `merge_named`).
NAMED_KEYS = (*NAMED_SECTIONS, "policy.model")


def load_config(
    paths: str | Path | list[str | Path] | tuple[str | Path, ...] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    base: dict[str, Any] | None = None,
) -> Config:
    """Defaults < `base` (e.g. a checkpoint's config) < YAML files in order < overrides, checked and built.
    An override `~key` removes the key from `base` and the files: it takes its default again."""
    if paths is None:
        paths = []
    elif isinstance(paths, (str, Path)):
        paths = [paths]
    layers: list[Any] = [] if base is None else [base]
    for path in paths:
        layers.extend(load_yaml_layers(path))
    removed = [o.removeprefix("~").strip() for o in overrides if o.startswith("~")]
    layers = without_keys(layers, removed) if removed else layers
    layers.append(parse_overrides([o for o in overrides if not o.startswith("~")], NAMED_KEYS))
    return build_config(layers)


def replaced_kwargs(layers: list[DictConfig]) -> Any:
    """`env.kwargs` of the last layer that sets it, which replaces the merged mapping as a whole:
    constructor arguments belong to one task (`-c minigrid_agent env.task=MiniGrid-DoorKey-5x5-v0
    env.kwargs={}` drops DistShift's start). The layers are left as they are."""
    found = None
    for layer in layers:
        env = layer.get("env")
        if isinstance(env, DictConfig) and "kwargs" in env:
            found = env.kwargs
    return found


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
    kwargs = replaced_kwargs(plain)
    merged = merge(defaults, *plain)
    if kwargs is not None:
        merged.env.kwargs = kwargs
    try:
        config = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        raise ConfigError(describe(e)) from None
    except (TypeError, ValueError, IndexError) as e:  # a section's own __post_init__ check
        raise ConfigError(f"config: {e}") from None
    for name, registry in NAMED_SECTIONS.items():
        setattr(config, name, build_named(sections[name], registry, name))
    run_hooks(config, "resolve")
    validate(config)
    return config


def run_hooks(config: Config, hook: str, *args: Any) -> None:
    """Call the `SectionChecks` hook `hook(config, *args)` of the algorithm, the policy and the policy's
    model sections, where their config class defines it."""
    for section in (config.algorithm, config.policy, getattr(config.policy, "model", None)):
        method = getattr(section, hook, None)
        if method is not None:
            method(config, *args)


def validate(config: Config) -> None:
    """Every check of a built config: each field's declared rule, then the checks across sections."""
    check_config(config)
    check_run(config)


def check_run(config: Config) -> None:
    """Checks that span sections: the env family's own settings and task, split names against
    env.splits, each split's levels, then the algorithm's, policy's and model's own `check_run`."""
    env_family(config.env).check(config.env)
    named = [("evaluation.splits", s) for s in config.evaluation.splits]
    if is_coordination_run(config):
        named += [("coordination.train_agent_splits", s) for s in config.coordination.train_agent_splits]
    for key, split in named:
        check_split_name(config.env, key, split)
    for split in ["train", *config.env.splits]:
        env = split_config(config.env, split)
        if env.num_levels and env.start_level + env.num_levels - 1 > INT32_MAX:
            where = "env" if split == "train" else f"env.splits.{split}"
            raise ConfigError(
                f"{where}: levels start_level={env.start_level} + num_levels={env.num_levels} run past level 2**31-1 "
                "(Procgen's last level seed); lower start_level or num_levels"
            )
    run_hooks(config, "check_run")


def check_world_size(config: Config, world_size: int) -> None:
    """Checks of a data-parallel run over `world_size` processes: the algorithm can run in parallel,
    env.num_envs (the total) splits evenly, then the algorithm's, policy's and model's own
    `check_world_size`."""
    if world_size <= 1:
        return
    algo, num_envs = config.algorithm, config.env.num_envs
    if not getattr(ALGORITHMS.get(algo.name), "data_parallel", False):
        raise ConfigError(
            f"algorithm {algo.name} runs in one process; launch it without torchrun (WORLD_SIZE={world_size})"
        )
    if num_envs % world_size:
        raise ConfigError(
            f"env.num_envs={num_envs} is the total over the {world_size} processes and must split evenly; "
            f"use a multiple of {world_size} (e.g. {(num_envs // world_size + 1) * world_size})"
        )
    run_hooks(config, "check_world_size", world_size)


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
