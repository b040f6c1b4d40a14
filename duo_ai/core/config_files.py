"""Reading config layers: YAML files (which may build on base files) and dotted `key=value` overrides.

This is the generic machinery; what the keys mean lives in `duo_ai.config`. Every failure is a
one-line `ConfigError`.

A config file is given as a path or as the name of a shipped config (`procgen_agent` for
`configs/procgen_agent.yaml`), which works from any folder: the configs install inside the package.

A YAML file may start with `defaults: [base, ...]`: each base is a YAML file (the `.yaml` suffix
may be left off) found beside the file, or else a shipped config of that name, loaded first and
overridden by the file's own keys. So `configs/procgen_logit.yaml` holds only what differs from
`configs/coordination_base.yaml`, and a file of your own can build on `procgen_ppo`.

A config file is bounded before it is used: at most `MAX_DEPTH` levels of nesting and `MAX_NODES`
values once its aliases are expanded (a "billion laughs" file of a few lines would expand to
billions), and no key twice in one mapping (YAML would silently keep the last).
"""

from __future__ import annotations

import copy
import re
from itertools import takewhile
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from duo_ai.core.errors import ConfigError

DEFAULTS_KEY = "defaults"
_PACKAGE = Path(__file__).resolve().parents[1]
# The shipped configs: duo_ai/configs once installed (pyproject.toml maps configs/ there), the
# top-level configs/ in a checkout.
CONFIGS = _PACKAGE / "configs" if (_PACKAGE / "configs").is_dir() else _PACKAGE.parent / "configs"
STUDIES = CONFIGS / "studies"  # the shipped study files (`duo-ai study NAME`)
MAX_DEPTH = 32  # the deepest config section is a few levels down
MAX_NODES = 100_000  # values after expanding aliases; a real config has a few hundred


class _BoundedLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key that appears twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[str, int] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                line = key_node.start_mark.line + 1
                if key_node.value in seen:
                    raise ConfigError(
                        f"{self.name}: key {key_node.value!r} appears twice (lines {seen[key_node.value]} and {line}); "
                        "keep one"
                    )
                seen[key_node.value] = line
        return super().construct_mapping(node, deep)


def _bounded(node: yaml.Node, path: Path, depth: int = 0, memo: dict[int, tuple[int, int]] | None = None) -> int:
    """The number of values `node` expands to (aliases counted each time they are used); raises a
    `ConfigError` past `MAX_DEPTH` or `MAX_NODES`. Shared (aliased) nodes are measured once."""
    memo = {} if memo is None else memo
    if id(node) not in memo:
        if depth > MAX_DEPTH:
            raise _too_deep(path)
        children = (
            [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode)
            else node.value if isinstance(node, yaml.SequenceNode)
            else []
        )  # fmt: skip
        sizes = [_bounded(child, path, depth + 1, memo) for child in children]
        height = 1 + max((memo[id(child)][1] for child in children), default=0)
        memo[id(node)] = (1 + sum(sizes), height)
    size, height = memo[id(node)]
    if depth + height > MAX_DEPTH + 1:
        raise _too_deep(path)
    if size > MAX_NODES:
        raise ConfigError(
            f"config file {path} expands to more than {MAX_NODES:,} values (through its aliases); "
            "a config holds a few hundred: remove the aliases that multiply"
        )
    return size


def _too_deep(path: Path) -> ConfigError:
    return ConfigError(f"config file {path} nests deeper than {MAX_DEPTH} levels; a config is a few levels deep")


def _load_bounded(path: Path, text: str) -> Any:
    """`yaml.safe_load`, bounded in depth, expanded size and duplicate keys (see the module docstring)."""
    loader = _BoundedLoader(text)
    loader.name = str(path)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _bounded(node, path)
        return loader.construct_document(node)
    except RecursionError:
        raise _too_deep(path) from None
    finally:
        loader.dispose()


def describe(e: OmegaConfBaseException) -> str:
    """One line saying which key is wrong and why."""
    key = getattr(e, "full_key", None) or getattr(e, "key", None)
    msg = str(getattr(e, "msg", None) or e).strip().splitlines()[0]
    if isinstance(e, ConfigKeyError):
        return f"unknown config key {key!r} ({msg}); check the spelling against `duo-ai configs quickstart`"
    if isinstance(e, ValidationError) and msg.startswith("Incompatible value 'None'"):
        return f"config key {key!r} cannot be empty (null); give it a value"
    if isinstance(e, ValidationError):
        return f"bad value for config key {key!r}: {msg}"
    return f"config problem at {key!r}: {msg}" if key else f"config problem: {msg}"


def merge(*layers: Any) -> DictConfig:
    """OmegaConf merge with errors as `ConfigError`."""
    try:
        return OmegaConf.merge(*layers)
    except OmegaConfBaseException as e:
        raise ConfigError(describe(e)) from None


def parse_overrides(overrides: list[str] | tuple[str, ...], named: tuple[str, ...] = ()) -> DictConfig:
    """`["algorithm.learning_rate=3e-4", ...]` -> a DictConfig; values are parsed as YAML.

    `named` are the keys whose value may be a class's name or a mapping with a `name`
    (`policy.model`): `policy.model=impala_ppo policy.model.hidden_size=64` names the class and sets
    its key, where a plain dotlist would let the second replace the first."""
    bad = [o for o in overrides if "=" not in o or not o.split("=", 1)[0].strip()]
    if bad:
        raise ConfigError(f"override {bad[0]!r} must look like key=value, e.g. env.task=starpilot")
    hidden = [o for o in overrides if not o.isprintable()]
    if hidden:  # YAML would fold a newline into a space: name=$'a\nb' would train into "a b"
        raise ConfigError(f"override {hidden[0]!r} holds a control character (a newline, a tab); remove it")
    try:
        return OmegaConf.from_dotlist(_name_keys(list(overrides), named))
    except OmegaConfBaseException as e:
        raise ConfigError(describe(e)) from None


def without_keys(layers: list[Any], keys: list[str]) -> list[Any]:
    """Copies of `layers` with each dotted key of `keys` removed from every layer, so that it takes its
    default again: the override `~env.kwargs.agent_start_pos` (Hydra's spelling). A key no layer
    sets is one line (a typo would otherwise remove nothing, silently)."""
    layers = [copy.deepcopy(OmegaConf.to_container(x) if isinstance(x, DictConfig) else x) for x in layers]
    for key in keys:
        if not key or "=" in key or not key.isprintable():
            raise ConfigError(f"override ~{key} must look like ~key (no value), e.g. ~env.kwargs.agent_start_pos")
        *path, last = key.split(".")
        removed = False
        for layer in layers:
            node = layer
            for part in path:
                node = node.get(part) if isinstance(node, dict) else None
            if isinstance(node, dict) and last in node:
                del node[last]
                removed = True
        if not removed:
            raise ConfigError(f"override ~{key} removes nothing: no config file (nor a base it names) sets {key}")
    return layers


def _name_keys(overrides: list[str], named: tuple[str, ...]) -> list[str]:
    """`K=V` becomes `K.name=V` where other overrides set keys inside K and K is `named`; for any
    other K the two cannot both hold, which is one line."""
    keys = [o.split("=", 1)[0].strip() for o in overrides]
    out = []
    for key, override in zip(keys, overrides, strict=True):
        value = override.split("=", 1)[1].strip()
        inner = next((k for k in keys if k.startswith(key + ".")), None)
        if inner is None or value.startswith("{"):
            out.append(override)
        elif key in named:
            out.append(f"{key}.name={value}")
        else:
            raise ConfigError(
                f"override {override!r} sets {key} to a value while {inner}=... sets a key inside it; keep one"
            )
    return out


def shipped_names(folder: Path = CONFIGS) -> list[str]:
    """The names of the shipped configs in `folder` (`CONFIGS`, or its `studies/`)."""
    return sorted(p.stem for p in folder.glob("*.yaml"))


def shipped_catalogue() -> list[tuple[str, str, str]]:
    """(name, kind, what it is for) of every shipped config and study file: what `duo-ai configs` lists."""
    return [
        (name, kind, opening_sentence(folder / f"{name}.yaml"))
        for kind, folder in (("config", CONFIGS), ("study", STUDIES))
        for name in shipped_names(folder)
    ]


def opening_sentence(path: Path) -> str:
    """The first sentence of the comment a YAML file opens with (what the file is for)."""
    lines = path.read_text().splitlines()
    comment = " ".join(line.removeprefix("#").strip() for line in takewhile(lambda s: s.startswith("#"), lines))
    return re.split(r"(?<!et al)\. (?=[A-Z0-9])", comment)[0].rstrip(".:")


def yaml_file_name(name: str) -> str:
    """A config's file name: `procgen_agent` and `procgen_agent.yaml` both name procgen_agent.yaml."""
    return name if name.endswith((".yaml", ".yml")) else f"{name}.yaml"


def shipped_config(name: str, folder: Path = CONFIGS) -> Path | None:
    """The shipped config called `name` (`procgen_agent` or `procgen_agent.yaml`), if there is one."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    path = folder / yaml_file_name(name)
    return path if path.is_file() else None


def find_config_file(name: str | Path, folder: Path = CONFIGS, what: str = "config file") -> Path:
    """A config given as a path (which wins when it exists) or as the name of a shipped config."""
    path = Path(name)
    if path.exists():
        return path
    shipped = shipped_config(str(name), folder)
    if shipped is not None:
        return shipped
    raise ConfigError(
        f"{what} {name} not found; pass a YAML file's path or the name of a shipped one "
        f"({', '.join(shipped_names(folder))})"
    )


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The mapping in one YAML file (no `defaults` handling)."""
    path = Path(path)
    if path.is_dir():
        if (path / "config.yaml").is_file():
            raise ConfigError(
                f"config file {path} is a run folder; pass {path / 'config.yaml'} to reuse its config, "
                f"or --resume {path} to continue the run"
            )
        raise ConfigError(f"config file {path} is a folder; pass a YAML file (`duo-ai configs` lists the shipped ones)")
    if path.exists() and not path.is_file():  # /dev/zero, a named pipe: reading would never end
        raise ConfigError(f"config file {path} is not a regular file (a device or a pipe); pass a YAML file")
    if not path.is_file():
        raise ConfigError(
            f"config file {path} not found; pass an existing YAML file (`duo-ai configs` lists the shipped ones)"
        )
    with path.open("rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04" or path.suffix in (".ckpt", ".pt", ".pth"):
        raise ConfigError(
            f"config file {path} is a checkpoint, not a YAML config; evaluate it with duo-ai eval --checkpoint "
            f"{path}, or continue its run with duo-ai train --resume <its run folder>"
        )
    try:
        data = _load_bounded(path, path.read_text())
    except UnicodeDecodeError:
        raise ConfigError(
            f"config file {path} is not a text file; pass a YAML config (`duo-ai configs` lists the shipped ones)"
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}; fix the syntax there") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping of keys (name:, env:, ...), not a {type(data).__name__}"
        )
    return data


def load_yaml_layers(path: str | Path, shipped: Path = CONFIGS, _seen: tuple[Path, ...] = ()) -> list[dict[str, Any]]:
    """The layers of one config file (a path, or the name of a file in `shipped`), its `defaults`
    bases first (recursively), then its own keys."""
    path = find_config_file(path, shipped)
    if path.resolve() in _seen:
        chain = " -> ".join(str(p.name) for p in (*_seen, path.resolve()))
        raise ConfigError(f"config files include each other in a loop ({chain}); remove one of the defaults")
    data = read_yaml_mapping(path)
    bases = data.pop(DEFAULTS_KEY, [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: '{DEFAULTS_KEY}' must be a list of config file names, e.g. [coordination_base]")
    layers: list[dict[str, Any]] = []
    for base in bases:
        base_path = path.parent / yaml_file_name(base)
        if not base_path.is_file():
            base_path = shipped_config(base, shipped) or base_path
        if not base_path.is_file():
            raise ConfigError(
                f"{path}: base config {base!r} not found at {base_path} nor among the shipped configs; "
                f"fix '{DEFAULTS_KEY}'"
            )
        layers.extend(load_yaml_layers(base_path, shipped, (*_seen, path.resolve())))
    layers.append(data)
    return layers
