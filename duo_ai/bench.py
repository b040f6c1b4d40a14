"""`duo-ai bench`: how fast training runs on this machine, and how close it gets to its compute bound.

One run measures, on one workload (game, num_envs x num_steps, minibatches, epochs):

- `env_sps`: the environment alone, stepped with random actions;
- `bound_sps`: the network alone, on synthetic data of the same shapes and in the same precision,
  through the same code as training (`PPOPolicy.act` once per rollout step, then
  `PPO.update` over every minibatch of every epoch). The loop cannot beat it;
- `train_sps`: the real `PPO.train_iteration` (rollout + update) after warm-up iterations;
- `baseline_sps`: the same loop with `precision=fp32` and `compile=false`.

On CUDA the report also holds the process's peak GPU memory (`peak_gpu_memory_mb`, what tensors
took; `gpu_memory_reserved_mb`, what torch's allocator held); both are None on a CPU.

`loop_efficiency = train_sps / bound_sps` is the share of the loop's time spent in the network,
so what is left (env stepping, storage, GAE, Python) is `1 - loop_efficiency`.

Under torchrun (`torchrun --nproc-per-node N duo-ai bench ...`) the workload is one data-parallel
PPO: `--num-envs` is the total, split over the processes, and the update synchronises them as in
training. `train_sps` (= `total_sps`) and `bound_sps` count every process's steps,
`per_process_sps` one process's share, `env_sps` one process's envs alone. Rank 0 reports.
"""

from __future__ import annotations

import gc
import os
import platform
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from rich.table import Table

from duo_ai.algorithms.ppo import PPO, RolloutBatch
from duo_ai.build import build_run, compute_from, device_name, env_maker
from duo_ai.config import Config, check_world_size, load_config
from duo_ai.core import distributed
from duo_ai.core.checks import Rule, check_options
from duo_ai.core.compute import resolve_device
from duo_ai.core.distributed import ProcessContext
from duo_ai.core.errors import ConfigError, EnvError
from duo_ai.envs.procgen import GAMES


@dataclass
class Workload:
    """What to train on; the defaults are the Procgen paper's recipe shape (batch 16,384)."""

    game: str = "coinrun"
    num_envs: int = 64
    num_steps: int = 256
    num_minibatches: int = 8
    update_epochs: int = 3
    iterations: int = 3
    warmup: int = 1

    def overrides(self) -> list[str]:
        return [
            f"env.task={self.game}",
            f"env.num_envs={self.num_envs}",
            f"algorithm.num_steps={self.num_steps}",
            f"algorithm.num_minibatches={self.num_minibatches}",
            f"algorithm.update_epochs={self.update_epochs}",
            # Anneal nothing and evaluate nothing: the bench times train_iteration() alone.
            "algorithm.anneal_lr=false",
            "evaluation.num_episodes=0",
        ]


# The command-line options of `duo-ai bench`, in `Workload` order after the game.
BENCH_OPTIONS = {
    "--num-envs": Rule(ge=1),
    "--num-steps": Rule(ge=1),
    "--num-minibatches": Rule(ge=1),
    "--epochs": Rule(ge=1),
    "--iterations": Rule(ge=1, le=10_000),
    "--warmup": Rule(ge=0, le=10_000),
}


def bench_config(workload: Workload, path: Any = None, overrides: list[str] = ()) -> Config:
    """The run config to measure: defaults < YAML < overrides < the workload."""
    w = workload
    check_options(BENCH_OPTIONS, w.num_envs, w.num_steps, w.num_minibatches, w.update_epochs, w.iterations, w.warmup)
    if (workload.num_envs * workload.num_steps) % workload.num_minibatches:
        raise ConfigError(
            f"--num-envs x --num-steps = {workload.num_envs * workload.num_steps} is not divisible by "
            f"--num-minibatches {workload.num_minibatches}"
        )
    config = load_config(path, [*overrides, *workload.overrides()])
    if config.env.name == "procgen" and config.env.task not in GAMES:  # before the first line of the report
        raise EnvError(f"unknown Procgen game {config.env.task!r}; choose one of: {', '.join(GAMES)}")
    if config.algorithm.name != "ppo":
        raise ConfigError(f"duo-ai bench times the ppo algorithm, not {config.algorithm.name!r}")
    return config


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def gpu_memory_mb(device: torch.device) -> dict[str, float | None]:
    """Peak CUDA memory of this process so far: what tensors took, and what torch's allocator held
    (close to what nvidia-smi shows for the process, less CUDA's own context). None off CUDA."""
    cuda = device.type == "cuda"
    return {
        "peak_gpu_memory_mb": torch.cuda.max_memory_allocated(device) / 1e6 if cuda else None,
        "gpu_memory_reserved_mb": torch.cuda.max_memory_reserved(device) / 1e6 if cuda else None,
    }


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so wall-clock timings cover it (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_env(config: Config, num_steps: int, seed: int = 0, ctx: ProcessContext | None = None) -> float:
    """Environment steps per second with uniformly random actions, after a short warm-up (this
    process's share of the envs under torchrun)."""
    ctx = ctx or ProcessContext()
    make = env_maker(config, compute_from(config, ctx), log=lambda message: None)
    env = make("train", num_envs=config.env.num_envs // ctx.world_size, seed=ctx.seed(seed))
    try:
        env.reset(seed=seed)
        rng = np.random.default_rng(seed)
        num_actions = int(env.single_action_space.n)

        def step() -> None:
            env.step(rng.integers(0, num_actions, env.num_envs))

        for _ in range(min(20, num_steps)):
            step()
        start = time.perf_counter()
        for _ in range(num_steps):
            step()
        return num_steps * env.num_envs / (time.perf_counter() - start)
    finally:
        env.close()


def build_ppo(config: Config, ctx: ProcessContext | None = None) -> PPO:
    """The PPO of a training run, built exactly as `duo-ai train` builds it (no run folder)."""
    return build_run(config, ctx, log=lambda message: None).algorithm


def synthetic_batch(algo: PPO, rng: np.random.Generator) -> RolloutBatch:
    """A full rollout of random frames, actions and targets, in the algorithm's own storage."""
    T, N, device = algo.config.num_steps, algo.num_envs, algo.compute.device
    batched_space = gym.vector.utils.batch_space(algo.policy.observation_space, N)
    batched_space.seed(int(rng.integers(2**31)))
    for step in range(T):
        algo.rollout.obs.write(step, batched_space.sample())
    B, num_actions = algo.batch_size, int(algo.policy.action_space.n)
    return RolloutBatch(
        obs=algo.rollout.obs.flat(),
        actions=torch.randint(0, num_actions, (B,), device=device),
        logprobs=torch.full((B,), -float(np.log(num_actions)), device=device),
        advantages=torch.randn(B, device=device),
        returns=torch.randn(B, device=device),
        values=torch.randn(B, device=device),
    )


def measure_bound(algo: PPO, seed: int = 0) -> dict[str, float]:
    """Seconds of network work per iteration: T inference calls plus every minibatch update.

    Runs on synthetic data through the training code itself (it overwrites the rollout storage
    and trains the weights on noise). Measure it after the loop: by then the process heap has
    grown to its steady size, as it has during the loop's timed iterations.
    """
    rng = np.random.default_rng(seed)
    cfg, device = algo.config, algo.compute.device
    batch = synthetic_batch(algo, rng)
    frames = algo.rollout.obs.write(
        0, gym.vector.utils.batch_space(algo.policy.observation_space, algo.num_envs).sample()
    )

    algo.policy.eval()
    for _ in range(3):
        algo.policy.act(frames, return_model_output=True)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(cfg.num_steps):
        algo.policy.act(frames, return_model_output=True)
    synchronize(device)
    act_seconds = (time.perf_counter() - start) / cfg.num_steps

    algo.policy.train()
    algo.update_minibatch(batch[torch.arange(algo.minibatch_size, device=device)])  # warm-up
    synchronize(device)
    start = time.perf_counter()
    algo.update(batch)  # the training code's own update: every minibatch of every epoch
    synchronize(device)
    update_seconds = time.perf_counter() - start

    bound_seconds = cfg.num_steps * act_seconds + update_seconds
    return {
        "inference_ms_per_step": 1000 * act_seconds,
        "update_seconds_per_iteration": update_seconds,
        "bound_seconds_per_iteration": bound_seconds,
        "bound_sps": algo.global_batch_size / bound_seconds,
    }


def measure_loop(algo: PPO, iterations: int, warmup: int) -> dict[str, float]:
    """Steps per second of `train_iteration()` over `iterations` after `warmup` untimed ones."""
    for _ in range(warmup):
        algo.train_iteration()
    synchronize(algo.compute.device)
    rollout = update = 0.0
    start = time.perf_counter()
    for _ in range(iterations):
        stats = algo.train_iteration()
        rollout += stats["charts/rollout_seconds"]
        update += stats["charts/update_seconds"]
    synchronize(algo.compute.device)
    elapsed = time.perf_counter() - start
    return {
        "sps": iterations * algo.global_batch_size / elapsed,
        "per_process_sps": iterations * algo.batch_size / elapsed,
        "seconds_per_iteration": elapsed / iterations,
        "rollout_seconds_per_iteration": rollout / iterations,
        "update_seconds_per_iteration": update / iterations,
    }


def settings_of(config: Config, algo: PPO) -> dict[str, Any]:
    """The compute settings a measurement ran with, as resolved (e.g. precision auto -> bf16)."""
    return {
        "device": str(algo.compute.device),
        "precision": algo.compute.precision,
        "channels_last": algo.compute.channels_last,
        "compile": algo.compute.compile,
        "num_threads": torch.get_num_threads(),
        "cache_host_memory": config.cache_host_memory,
    }


def measure_baseline(
    workload: Workload,
    config_path: Any,
    overrides: list[str],
    train_sps: float,
    log: Callable[[str], None],
    ctx: ProcessContext | None = None,
) -> dict[str, Any]:
    """The same training loop in plain fp32, eager: the report's baseline fields."""
    config = bench_config(workload, config_path, [*overrides, "precision=fp32", "compile=false"])
    algo = build_ppo(config, ctx)
    settings = settings_of(config, algo)
    log(f"baseline loop (fp32, eager): {workload.warmup} warm-up + {workload.iterations} iterations")
    loop = measure_loop(algo, workload.iterations, workload.warmup)
    algo.env.close()
    return {
        "baseline_settings": settings,
        "baseline_sps": loop["sps"],
        "speedup_vs_baseline": train_sps / loop["sps"],
        "baseline_loop": loop,
    }


def run_bench(
    workload: Workload,
    config_path: Any = None,
    overrides: list[str] = (),
    baseline: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any] | None:
    """Measure env, bound, training loop and fp32 baseline loop on one workload; returns the report
    (under torchrun: on rank 0, None on the other ranks)."""
    config = bench_config(workload, config_path, list(overrides))
    ctx = ProcessContext.from_env()
    check_world_size(config, ctx.world_size)
    distributed.start(ctx, resolve_device(device_name(config, ctx)), config.distributed_timeout_s)
    report = measure_all(config, workload, config_path, list(overrides), baseline, log, ctx)
    return report if ctx.is_main else None


def measure_all(
    config: Config,
    workload: Workload,
    config_path: Any,
    overrides: list[str],
    baseline: bool,
    log: Callable[[str], None],
    ctx: ProcessContext,
) -> dict[str, Any]:
    """`run_bench`'s measurements, in every process of a data-parallel bench alike."""
    if not ctx.is_main:
        log = lambda message: None  # noqa: E731
    # Other processes on the machine skew every number here: record how busy it was.
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    local_envs = workload.num_envs // ctx.world_size
    log(f"environment: {local_envs} x {config.env.task}, random actions" + _per_process(ctx))
    env_sps = measure_env(config, max(workload.num_steps, 200), seed=config.seed, ctx=ctx)

    algo = build_ppo(config, ctx)
    settings = settings_of(config, algo)
    log(f"training loop ({settings['precision']}): {workload.warmup} warm-up + {workload.iterations} iterations")
    loop = measure_loop(algo, workload.iterations, workload.warmup)
    log(f"compute bound ({settings['precision']}): {workload.num_steps} inference calls + one update, synthetic")
    bound = measure_bound(algo, seed=config.seed)
    storage_mb = algo.rollout.obs.nbytes() / 1e6
    peak, gpu_memory = peak_rss_mb(), gpu_memory_mb(algo.compute.device)
    algo.env.close()
    del algo
    gc.collect()

    report: dict[str, Any] = {
        "env_sps": env_sps,
        "train_sps": loop["sps"],
        "world_size": ctx.world_size,
        "per_process_sps": loop["per_process_sps"],
        "total_sps": loop["sps"],
        "baseline_sps": None,
        "speedup_vs_baseline": None,
        "bound_sps": bound["bound_sps"],
        "loop_efficiency": loop["sps"] / bound["bound_sps"],
        "peak_rss_mb": peak,
        **gpu_memory,
        "rollout_storage_mb": storage_mb,
        "bound": bound,
        "loop": loop,
    }
    if baseline:
        report.update(measure_baseline(workload, config_path, overrides, loop["sps"], log, ctx))
    report["settings"] = {**settings, **settings_of_run(config, workload, ctx), "load_average_before": load_before}
    report["settings"]["load_average_after"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return report


def settings_of_run(config: Config, workload: Workload, ctx: ProcessContext) -> dict[str, Any]:
    """The workload, its batch shapes (minibatches per process) and the machine, for the report."""
    batch_size = workload.num_envs * workload.num_steps
    return {
        **asdict(workload),
        "world_size": ctx.world_size,
        "num_envs_per_process": workload.num_envs // ctx.world_size,
        "batch_size": batch_size,
        "minibatch_size": batch_size // ctx.world_size // workload.num_minibatches,
        "distribution_mode": config.env.distribution_mode,
        "num_levels": config.env.num_levels,
        "torch": torch.__version__,
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
    }


def _per_process(ctx: ProcessContext) -> str:
    return f" in each of {ctx.world_size} processes" if ctx.distributed else ""


def bench_table(report: dict[str, Any]) -> Table:
    """`duo-ai bench`'s report as a table."""
    s = report["settings"]
    where = f"{s['device']} x {s['world_size']} processes" if s["world_size"] > 1 else s["device"]
    table = Table(
        title=f"{s['game']}: {s['num_envs']} envs x {s['num_steps']} steps, "
        f"{s['num_minibatches']} minibatches x {s['update_epochs']} epochs on {where} "
        f"({s['precision']}, channels_last={s['channels_last']}, compile={s['compile']}, threads={s['num_threads']})"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("environment only (SPS)", report["env_sps"], ",.0f"),
        ("compute bound (SPS)", report["bound_sps"], ",.0f"),
        ("training loop (SPS)", report["train_sps"], ",.0f"),
        ("processes (torchrun)", report["world_size"], "d"),
        ("training loop per process (SPS)", report["per_process_sps"], ",.0f"),
        ("loop efficiency (loop / bound)", report["loop_efficiency"], ".1%"),
        ("fp32 eager baseline loop (SPS)", report["baseline_sps"], ",.0f"),
        ("speedup vs baseline", report["speedup_vs_baseline"], ".2f"),
        ("inference per step (ms)", report["bound"]["inference_ms_per_step"], ".1f"),
        ("update per iteration (s)", report["bound"]["update_seconds_per_iteration"], ".2f"),
        ("rollout storage (MB)", report["rollout_storage_mb"], ",.0f"),
        ("peak resident memory (MB)", report["peak_rss_mb"], ",.0f"),
        ("peak GPU memory allocated (MB)", report.get("peak_gpu_memory_mb"), ",.0f"),
    ]
    for name, value, fmt in rows:
        table.add_row(name, "-" if value is None else format(value, fmt))
    return table
