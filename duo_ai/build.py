"""Building a run's objects from a `Config`: one builder for `train`, `eval` and `bench`.

The order is the order of dependence: compute settings, the environments (a coordination run
first resolves its agents and base penalty, once), the policy over the training env, and the
algorithm over both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch

from duo_ai.config import Config, check_world_size, load_config
from duo_ai.coordination.config import is_coordination_run
from duo_ai.coordination.setup import Coordination, setup_coordination
from duo_ai.core.algorithm import Algorithm
from duo_ai.core.compute import Compute
from duo_ai.core.distributed import ProcessContext
from duo_ai.core.errors import ConfigError
from duo_ai.core.policy import Policy
from duo_ai.core.registry import ALGORITHMS, POLICIES
from duo_ai.core.rng import seed_everything
from duo_ai.envs import make_env
from duo_ai.logger import console

Log = Callable[[str], None]


def config_from_checkpoint(payload: dict[str, Any], paths: Any = None, overrides: list[str] = ()) -> Config:
    """The run config stored in a checkpoint, with optional YAML files and overrides on top."""
    stored = dict(payload.get("config") or {})
    stored["policy"] = payload["policy_config"]  # the policy comes from the checkpoint's own policy_config
    return load_config(paths, overrides, base=stored)


def device_name(config: Config, ctx: ProcessContext | None = None) -> str:
    """`config.device`, except that under torchrun `auto`/`cuda` mean this process's own GPU,
    cuda:LOCAL_RANK (an explicit `cuda:N`, `cpu` or `mps` is taken as it is)."""
    device = config.device
    if ctx is not None and ctx.distributed and device in ("auto", "cuda") and torch.cuda.is_available():
        device = f"cuda:{ctx.local_rank}"
    return device


def compute_from(config: Config, ctx: ProcessContext | None = None) -> Compute:
    """The resolved device/precision/layout settings; under torchrun each process takes its own GPU."""
    return Compute.from_settings(
        device_name(config, ctx),
        config.precision,
        config.channels_last,
        config.compile,
        config.num_threads,
        config.cache_host_memory,
    )


class EnvMaker:
    """Builds the run's vector env of any split, wrapped for the coordinator in a coordination run."""

    def __init__(self, config: Config, coordination: Coordination | None) -> None:
        self.config = config
        self.coordination = coordination

    def __call__(self, split: str = "train", num_envs: int | None = None, seed: int = 0) -> gym.vector.VectorEnv:
        env = make_env(self.config.env, split, num_envs=num_envs, seed=seed)
        return self.coordination.wrap(env, split) if self.coordination is not None else env


def env_maker(config: Config, compute: Compute, log: Log, split: str = "train", agents: dict | None = None) -> EnvMaker:
    """The run's `EnvMaker`. A coordination run resolves its agents and base penalty here, into `config`;
    `agents` are those embedded in a coordinator's checkpoint (used instead of the files it names)."""
    coordination = None
    if is_coordination_run(config):
        spaces_env = make_env(config.env, split, num_envs=1)  # a bad game or split fails here, early
        try:
            coordination = setup_coordination(config, compute, spaces_env, log, embedded=agents)
        finally:
            spaces_env.close()
    return EnvMaker(config, coordination)


def build_policy(config: Config, env: gym.vector.VectorEnv, compute: Compute) -> Policy:
    policy = POLICIES.get(config.policy.name)(config.policy, env)
    return policy.setup(compute)


@dataclass
class RunParts:
    """Everything a training run drives; `close()` releases the environments."""

    compute: Compute
    make_env: EnvMaker
    env: gym.vector.VectorEnv
    policy: Policy
    algorithm: Algorithm
    seed: int

    def close(self) -> None:
        self.algorithm.close()
        self.env.close()


# Host memory of one training env: a Procgen game's own state (~2.2 MB measured for coinrun, rounded
# up), a classic-control one next to nothing; and per rollout step its observation plus a few floats.
PROCGEN_ENV_BYTES = 3 * 2**20
CLASSIC_ENV_BYTES = 64 * 2**10
STEP_EXTRA_BYTES = 64


# From this many envs on, building them takes long enough to say so first.
MANY_ENVS = 1024


def check_memory(config: Config) -> None:
    """Refuse, before building anything, a run whose envs and rollout cannot fit in the memory this
    machine has available (every process of a data-parallel run on it together)."""
    available = available_memory()
    if available is None:
        return
    n, steps = config.env.num_envs, int(getattr(config.algorithm, "num_steps", 1))
    procgen = config.env.name == "procgen"
    env_bytes = PROCGEN_ENV_BYTES if procgen else CLASSIC_ENV_BYTES
    obs_bytes = 64 * 64 * 3 if procgen else 1024
    need = (n + config.evaluation.num_envs) * env_bytes + n * steps * (obs_bytes + STEP_EXTRA_BYTES)
    if need > available:
        raise ConfigError(
            f"env.num_envs={n} with algorithm.num_steps={steps} needs about {need / 2**30:,.1f} GiB of memory "
            f"(the games, ~{env_bytes / 2**20:.2g} MB each, and the rollout), but {available / 2**30:,.1f} GiB is "
            "available; lower env.num_envs or algorithm.num_steps"
        )


def available_memory() -> int | None:
    """Bytes of memory this process may still use: the machine's available memory, capped by its cgroup's limit."""
    found = []
    try:
        with open("/proc/meminfo") as f:
            found += [int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:")]
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
        if limit != "max":
            found.append(int(limit) - int(used))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def build_run(
    config: Config, ctx: ProcessContext | None = None, log: Log = print, agents: dict | None = None
) -> RunParts:
    """Seed, then build compute, environments, policy and algorithm for a training run
    (`agents`: a resumed coordinator's embedded novice and expert).

    Under torchrun (`ctx.world_size` processes, the process group started) each process builds
    `env.num_envs / world_size` training envs with its own seed; the algorithm synchronises them.
    """
    ctx = ctx or ProcessContext()
    check_world_size(config, ctx.world_size)
    check_memory(config)
    if ctx.is_main and config.env.num_envs >= MANY_ENVS:  # minutes of silence otherwise
        console.print(f"building {config.env.num_envs:,} {config.env.task} environments...", highlight=False)
    seed = ctx.seed(config.seed)
    # The run's own seed (rank 0's) while a coordination run resolves its agents and measures its
    # base penalty, so every process of a data-parallel run measures the same one.
    seed_everything(config.seed)
    compute = compute_from(config, ctx)
    make = env_maker(config, compute, log, agents=agents)
    seed_everything(seed)  # the same initial weights whether or not the base penalty was measured just now
    env = make("train", num_envs=config.env.num_envs // ctx.world_size, seed=seed)
    try:
        policy = build_policy(config, env, compute)
        algorithm = ALGORITHMS.get(config.algorithm.name)(
            config.algorithm,
            policy,
            env,
            seed=seed,
            make_env=lambda split, n: make(split, n, seed=config.seed),
            ctx=ctx,
        )
    except BaseException:
        env.close()
        raise
    return RunParts(compute, make, env, policy, algorithm, seed)
