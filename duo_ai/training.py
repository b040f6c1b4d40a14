"""A training run: one loop that iterates any `Algorithm`, logs, evaluates and saves.

The run folder `<experiments_dir>/<name>/` holds the resolved `config.yaml`, `train.log`,
TensorBoard events under `tb/`, `progress.csv` and `eval.csv`, `last.ckpt` (for `--resume`) and
`best_<split>.ckpt` for each evaluation split. Only the main process writes files.

    with Trainer(config) as trainer:   # builds everything (build.build_run), opens the run folder
        trainer.run()                  # iterate until the algorithm is done, evaluate, summarise
                                       # leaving the block closes display, TensorBoard and envs
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any

from duo_ai.build import RunParts, build_run
from duo_ai.config import Config, config_to_dict, config_to_yaml
from duo_ai.core.checkpoint import load_checkpoint, save_checkpoint
from duo_ai.core.distributed import ProcessContext
from duo_ai.core.errors import ConfigError
from duo_ai.core.files import atomic_write_text
from duo_ai.evaluation import EVAL_SEED_OFFSET, EvalResult, evaluate
from duo_ai.logger import RunLogger


def checkpoint_payload(config: Config, parts: RunParts, **extra: Any) -> dict[str, Any]:
    """The checkpoint dict: weights, policy config, full config, and the algorithm's resume state."""
    return {
        "model_state_dict": {k: v.cpu() for k, v in parts.policy.get_params().items()},
        "policy_config": dataclasses.asdict(parts.policy.config),
        "config": config_to_dict(config),
        **parts.algorithm.state_dict(),
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
    """Owns one run: its parts (env, policy, algorithm), the logger and the checkpoints."""

    def __init__(self, config: Config, resume: bool = False, show_progress: bool = True) -> None:
        self.config = config
        self.ctx = ProcessContext.from_env()
        # Messages of the build (e.g. the coordination set-up) reach train.log once it exists.
        early: list[str] = []
        # Build first: a bad game, split or agent fails before any folder is touched.
        self.parts = build_run(config, self.ctx, log=early.append)
        try:
            self.run_dir = prepare_run_dir(config, resume) if self.ctx.is_main else None
            self.best: dict[str, float] = {}
            if resume:
                state = load_checkpoint(self.run_dir / "last.ckpt")
                self.parts.policy.set_params(state["model_state_dict"])
                self.parts.algorithm.load_state_dict(state)
                self.best = dict(state.get("best", {}))
            self.logger = RunLogger(self.run_dir, config, show_progress=show_progress, enabled=self.ctx.is_main)
        except BaseException:
            self.parts.close()
            raise
        for message in early:
            self.logger.info(message)
        if self.ctx.is_main:
            atomic_write_text(self.run_dir / "config.yaml", config_to_yaml(config))

    # -- lifetime --------------------------------------------------------------------------------
    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: Any) -> None:
        if error is not None and not isinstance(error, (KeyboardInterrupt, ConfigError)):
            self.logger.info(f"run failed: {type(error).__name__}: {error}")
        self.close()

    def close(self) -> None:
        """Close everything the run opened: progress display, log file, TensorBoard, environments."""
        self.logger.close()
        self.parts.close()

    # -- the loop --------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Iterate the algorithm until done (saving and evaluating as configured), then summarise."""
        algo, freq = self.parts.algorithm, self.config.algorithm
        start, start_step = time.perf_counter(), algo.global_step
        self.logger.start(algo.num_iterations, algo.iteration)
        last_saved, last_eval, results = algo.iteration, None, {}
        try:
            while not algo.done:
                stats = algo.train_iteration()
                it = algo.iteration
                self.logger.update(it, algo.global_step, stats)
                if freq.log_freq > 0 and it % freq.log_freq == 0:
                    self.logger.log_train(stats, algo.global_step, it)
                if freq.save_freq > 0 and it % freq.save_freq == 0:
                    self.save("last.ckpt")
                    last_saved = it
                if freq.eval_freq > 0 and it % freq.eval_freq == 0:
                    results, last_eval = self.evaluate_splits(), it
        except KeyboardInterrupt:
            if algo.iteration != last_saved:
                self.save("last.ckpt")
            self.logger.info(f"interrupted at step {algo.global_step:,}; saved last.ckpt, resume with --resume")
            raise
        self.save("last.ckpt")
        if last_eval != algo.iteration:
            results = self.evaluate_splits()
        return self.finish(results, time.perf_counter() - start, algo.global_step - start_step)

    def evaluate_splits(self) -> dict[str, EvalResult]:
        """Evaluate on each `evaluation.splits`; keep `best_<split>.ckpt` of the best mean reward."""
        ev = self.config.evaluation
        results: dict[str, EvalResult] = {}
        if ev.num_episodes < 1:
            return results
        for i, split in enumerate(ev.splits):
            env = self.parts.make_env(split, min(ev.num_envs, ev.num_episodes))
            try:
                seed = self.config.seed + EVAL_SEED_OFFSET * (i + 1)
                results[split] = evaluate(
                    self.parts.policy, env, ev.num_episodes, ev.temperature, seed=seed, split=split
                )
            finally:
                env.close()
            metrics = results[split].metrics()
            algo = self.parts.algorithm
            self.logger.log_eval(split, metrics, algo.global_step, algo.iteration)
            if metrics["reward_mean"] > self.best.get(split, -float("inf")):
                self.best[split] = metrics["reward_mean"]
                summary = {k: v for k, v in metrics.items() if k != "episode_returns"}
                self.save(f"best_{split}.ckpt", eval_metrics=summary)
        return results

    def save(self, name: str, **extra: Any) -> None:
        if self.ctx.is_main:
            save_checkpoint(self.run_dir / name, checkpoint_payload(self.config, self.parts, best=self.best, **extra))

    def finish(self, results: dict[str, EvalResult], seconds: float, steps: int) -> dict[str, Any]:
        """Write summary.json and log the totals."""
        summary = {
            "run_dir": str(self.run_dir),
            "global_step": self.parts.algorithm.global_step,
            "seconds": seconds,
            "sps": steps / seconds if seconds > 0 else 0.0,
            "eval": {s: {k: v for k, v in r.metrics().items() if k != "episode_returns"} for s, r in results.items()},
        }
        if self.ctx.is_main:
            atomic_write_text(self.run_dir / "summary.json", json.dumps(summary, indent=2))
        self.logger.info(
            f"done: {summary['global_step']:,} steps in {seconds:.0f}s ({summary['sps']:.0f} SPS); "
            f"run folder {self.run_dir}"
        )
        return summary
