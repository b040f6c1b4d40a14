"""A training run: build everything from a `Config`, iterate the algorithm, log, evaluate, save.

The run folder `<experiments_dir>/<name>/` holds the resolved `config.yaml`, `train.log`,
TensorBoard events under `tb/`, `last.ckpt` (for `--resume`) and `best_<split>.ckpt` for each
evaluation split. Only the main process writes files.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from duo_ai.coordination.config import is_coordination_run
from duo_ai.coordination.env import make_coordination_env
from duo_ai.coordination.sweep import cost_sweep
from duo_ai.core.checkpoint import load_checkpoint, save_checkpoint
from duo_ai.core.compute import Compute
from duo_ai.core.config import Config, config_to_dict, config_to_yaml
from duo_ai.core.distributed import ProcessContext
from duo_ai.core.errors import ConfigError
from duo_ai.core.registry import ALGORITHMS, POLICIES
from duo_ai.envs import make_env
from duo_ai.evaluation import EvalResult, evaluate
from duo_ai.logger import RunLogger

EVAL_SEED_OFFSET = 10_000


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def compute_from(config: Config, ctx: ProcessContext | None = None) -> Compute:
    device = config.device
    if ctx is not None and ctx.world_size > 1 and device in ("auto", "cuda") and torch.cuda.is_available():
        device = f"cuda:{ctx.local_rank}"
    return Compute.from_settings(
        device, config.precision, config.channels_last, config.compile, config.num_threads, config.cache_host_memory
    )


def build_policy(config: Config, env: Any, compute: Compute) -> Any:
    policy = POLICIES.get(config.policy.name)(config.policy, env)
    return policy.setup(compute)


def make_run_env(config: Config, split: str = "train", num_envs: int | None = None, seed: int = 0) -> Any:
    """The environment a run trains or evaluates on, for `split`.

    In a coordination run (novice/expert checkpoints configured) the base env is wrapped in a
    `CoordinationEnv` over that split's novice and expert. This resolves, in `config`, the agent
    paths and a null `coordination.base_penalty` (measured from the expert), so the run's
    config.yaml and checkpoints record what was used.
    """
    env = make_env(config.env, split, num_envs=num_envs, seed=seed)
    if is_coordination_run(config):
        env = make_coordination_env(config, split, env, compute_from(config))
    return env


def checkpoint_payload(config: Config, policy: Any, algorithm: Any, **extra: Any) -> dict[str, Any]:
    """The checkpoint dict: weights, policy config, full config, and the algorithm's resume state."""
    return {
        "model_state_dict": {k: v.cpu() for k, v in policy.get_params().items()},
        "policy_config": dataclasses.asdict(policy.config),
        "config": config_to_dict(config),
        **algorithm.state_dict(),
        **extra,
    }


def prepare_run_dir(config: Config, resume: bool) -> Path:
    """Create the run folder, refusing to clobber an existing one unless asked to."""
    run_dir = Path(config.experiments_dir) / config.name
    if resume:
        return run_dir
    if run_dir.exists() and any(run_dir.iterdir()):
        if not config.overwrite:
            raise ConfigError(
                f"run folder {run_dir} already exists; pass overwrite=true to replace it, "
                f"--resume {run_dir} to continue it, or name=<new name> for a new run"
            )
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


class Trainer:
    """Owns one run: env, policy, algorithm, evaluation splits, logger and checkpoints."""

    def __init__(self, config: Config, resume: bool = False, show_progress: bool = True) -> None:
        self.config = config
        self.ctx = ProcessContext.from_env()
        self.compute = compute_from(config, self.ctx)
        seed = self.ctx.seed(config.seed)
        seed_everything(seed)
        # Build the env first: a bad game or split fails before any folder is touched.
        self.env = make_run_env(config, "train", seed=seed)
        self.run_dir = prepare_run_dir(config, resume) if self.ctx.is_main else None
        resume_state = load_checkpoint(self.run_dir / "last.ckpt") if resume else None
        self.policy = build_policy(config, self.env, self.compute)
        self.algorithm = ALGORITHMS.get(config.algorithm.name)(config.algorithm, self.policy, self.env, seed=seed)
        self.best: dict[str, float] = {}
        if resume_state is not None:
            self.policy.set_params(resume_state["model_state_dict"])
            self.algorithm.load_state_dict(resume_state)
            self.best = dict(resume_state.get("best", {}))

        self.logger = RunLogger(self.run_dir, config, show_progress=show_progress, enabled=self.ctx.is_main)
        if self.ctx.is_main:
            (self.run_dir / "config.yaml").write_text(config_to_yaml(config))

    # -- files -----------------------------------------------------------------------------------
    def save(self, name: str, **extra: Any) -> None:
        if self.ctx.is_main:
            payload = checkpoint_payload(self.config, self.policy, self.algorithm, best=self.best, **extra)
            save_checkpoint(self.run_dir / name, payload)

    # -- evaluation ------------------------------------------------------------------------------
    def evaluate_splits(self) -> dict[str, EvalResult]:
        ev = self.config.evaluation
        results = {}
        for i, split in enumerate(ev.splits):
            env = make_run_env(self.config, split, num_envs=min(ev.num_envs, ev.num_episodes))
            try:
                seed = self.config.seed + EVAL_SEED_OFFSET * (i + 1)
                results[split] = evaluate(self.policy, env, ev.num_episodes, ev.temperature, seed=seed, split=split)
            finally:
                env.close()
            metrics = results[split].metrics()
            self.logger.log_eval(split, metrics, self.algorithm.global_step)
            if metrics["reward_mean"] > self.best.get(split, -float("inf")):
                self.best[split] = metrics["reward_mean"]
                self.save(
                    f"best_{split}.ckpt", eval_metrics={k: v for k, v in metrics.items() if k != "episode_returns"}
                )
        return results

    # -- the loop --------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        if hasattr(self.algorithm, "fit"):
            return self.fit()
        cfg, algo = self.config, self.algorithm
        total = cfg.algorithm.total_timesteps
        ev_on = cfg.evaluation.num_episodes > 0 and bool(cfg.evaluation.splits)
        self.logger.start(total, algo.global_step)
        last_saved = algo.iteration
        start = time.perf_counter()
        start_step = algo.global_step
        results: dict[str, EvalResult] = {}
        try:
            while algo.global_step < total:
                stats = algo.train_iteration()
                it = algo.iteration
                self.logger.update(algo.global_step, stats)
                if cfg.algorithm.log_freq > 0 and it % cfg.algorithm.log_freq == 0:
                    self.logger.log_train(stats, algo.global_step, it)
                if cfg.algorithm.save_freq > 0 and it % cfg.algorithm.save_freq == 0:
                    self.save("last.ckpt")
                    last_saved = it
                if ev_on and cfg.algorithm.eval_freq > 0 and it % cfg.algorithm.eval_freq == 0:
                    results = self.evaluate_splits()
        except KeyboardInterrupt:
            if algo.iteration != last_saved:
                self.save("last.ckpt")
            self.logger.info(f"interrupted at step {algo.global_step:,}; saved last.ckpt, resume with --resume")
            self.logger.close()
            raise
        self.save("last.ckpt")
        if ev_on and not (cfg.algorithm.eval_freq > 0 and algo.iteration % cfg.algorithm.eval_freq == 0):
            results = self.evaluate_splits()
        return self.finish(results, start, start_step)

    def fit(self) -> dict[str, Any]:
        """Run a one-shot algorithm (a baseline's calibration sweep: no gradient steps), save, evaluate."""
        start, start_step = time.perf_counter(), self.algorithm.global_step
        try:
            self.algorithm.fit(
                lambda split, num_envs: make_run_env(self.config, split, num_envs, seed=self.config.seed),
                self.logger.info,
            )
        except BaseException:
            self.logger.close()
            raise
        self.save("last.ckpt")
        ev = self.config.evaluation
        results = self.evaluate_splits() if ev.num_episodes > 0 and ev.splits else {}
        return self.finish(results, start, start_step)

    def finish(self, results: dict[str, EvalResult], start: float, start_step: int) -> dict[str, Any]:
        """Write summary.json, log the totals and close the logger."""
        algo = self.algorithm
        elapsed = time.perf_counter() - start
        summary = {
            "run_dir": str(self.run_dir),
            "global_step": algo.global_step,
            "seconds": elapsed,
            "sps": (algo.global_step - start_step) / elapsed if elapsed > 0 else 0.0,
            "eval": {s: {k: v for k, v in r.metrics().items() if k != "episode_returns"} for s, r in results.items()},
        }
        if self.ctx.is_main:
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        self.logger.info(
            f"done: {algo.global_step:,} steps in {elapsed:.0f}s ({summary['sps']:.0f} SPS); run folder {self.run_dir}"
        )
        self.logger.close()
        return summary

    def close(self) -> None:
        self.env.close()


def config_from_checkpoint(payload: dict[str, Any], path: str | None = None, overrides: list[str] = ()) -> Config:
    """The run config stored in a checkpoint, with optional YAML file and overrides on top."""
    from duo_ai.core.config import load_config

    stored = dict(payload.get("config") or {})
    stored.pop("policy", None)  # the policy comes from the checkpoint's own policy_config
    stored["policy"] = payload["policy_config"]
    return load_config(path, overrides, base=stored)


def evaluate_checkpoint(
    checkpoint: str,
    split: str | None = None,
    num_episodes: int | None = None,
    temperature: float | None = None,
    config_path: str | None = None,
    overrides: list[str] = (),
    seed: int | None = None,
    cost_weights: list[float] | None = None,
) -> dict[str, Any]:
    """Load a checkpoint and evaluate it; unset arguments come from the checkpoint's config.

    With `cost_weights` (a coordinator only) the metrics add `cost_sweep`, the reward at each
    expert-query cost weight on the same episodes, and `auc`, the area under that curve.
    """
    payload = load_checkpoint(checkpoint)
    config = config_from_checkpoint(payload, config_path, list(overrides))
    ev = config.evaluation
    split = split or (ev.splits[0] if ev.splits else "test")
    num_episodes = num_episodes if num_episodes is not None else ev.num_episodes
    temperature = temperature if temperature is not None else ev.temperature
    if num_episodes < 1:
        raise ConfigError(f"--episodes must be at least 1, got {num_episodes}")
    if temperature < 0:
        raise ConfigError(f"--temperature must be >= 0, got {temperature}")
    if cost_weights and not is_coordination_run(config):
        raise ConfigError(f"--cost-sweep evaluates coordinators; {checkpoint} is a base agent (no train_novice/expert)")
    seed = config.seed if seed is None else seed
    seed_everything(seed)
    compute = compute_from(config)
    env = make_run_env(config, split, num_envs=min(ev.num_envs, num_episodes))
    try:
        config.policy.load_path = None
        policy = build_policy(config, env, compute)
        policy.set_params(payload["model_state_dict"])
        result = evaluate(policy, env, num_episodes, temperature, seed=seed + EVAL_SEED_OFFSET, split=split)
    finally:
        env.close()
    metrics = result.metrics()
    if cost_weights:
        c = config.coordination
        metrics.update(cost_sweep(result, c.base_penalty, c.switch_agent_cost_weight, cost_weights))
    metrics.update(
        {
            "checkpoint": str(checkpoint),
            "global_step": int(payload.get("global_step", 0)),
            "env": config.env.task,
            "seed": seed,
        }
    )
    return metrics
