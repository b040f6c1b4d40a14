"""A training run: one loop that iterates any `Algorithm`, logs, evaluates and saves.

The run folder `<experiments_dir>/<name>/` holds the resolved `config.yaml`, `run_info.json`
(what actually ran: device, precision, threads, versions, commit), `train.log`, TensorBoard events
under `tb/`, `last.ckpt` (for `--resume`) and `best_<split>.ckpt` for each evaluation split. Only
the main process writes files. The folder is checked and opened by `duo_ai.runs.RunFolder`:
`overwrite=true` keeps the old run aside until the new one has saved its first last.ckpt.

    with Trainer(config) as trainer:   # builds everything (build.build_run), opens the run folder
        trainer.run()                  # iterate until the algorithm is done, evaluate, summarise
                                       # leaving the block closes display, TensorBoard and envs
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from duo_ai.build import RunParts, build_run
from duo_ai.config import Config, config_to_dict, config_to_yaml, validate
from duo_ai.core.checkpoint import load_checkpoint, save_checkpoint
from duo_ai.core.distributed import ProcessContext
from duo_ai.core.errors import ConfigError
from duo_ai.core.files import atomic_write_text
from duo_ai.evaluation import EVAL_SEED_OFFSET, EvalResult, evaluate
from duo_ai.logger import RunLogger, console
from duo_ai.runs import RunFolder, run_info


def checkpoint_payload(config: Config, parts: RunParts, **extra: Any) -> dict[str, Any]:
    """The checkpoint dict: weights, policy config, full config, and the algorithm's resume state."""
    return {
        "model_state_dict": {k: v.cpu() for k, v in parts.policy.get_params().items()},
        "policy_config": dataclasses.asdict(parts.policy.config),
        "config": config_to_dict(config),
        **parts.algorithm.state_dict(),
        **extra,
    }


class Trainer:
    """Owns one run: its parts (env, policy, algorithm), the logger and the checkpoints."""

    def __init__(self, config: Config, resume: bool = False, show_progress: bool = True) -> None:
        self.config = config
        self.ctx = ProcessContext.from_env()
        # Check the config, the experiments folder and the run folder, then build: a bad value,
        # game, split or agent fails before any folder is touched.
        validate(config)
        self.folder = RunFolder(config, resume) if self.ctx.is_main else None
        # Messages of the build (e.g. the coordination set-up) reach train.log once it exists.
        early: list[str] = []
        self.parts = build_run(config, self.ctx, log=early.append)
        try:
            self.run_dir = self.folder.open(early.append) if self.folder is not None else None
            self.best: dict[str, float] = {}
            if resume:
                state = load_checkpoint(self.run_dir / "last.ckpt")
                self.parts.policy.set_params(state["model_state_dict"])
                self.parts.algorithm.load_state_dict(state)
                self.best = dict(state.get("best", {}))
            self.logger = RunLogger(self.run_dir, config, show_progress=show_progress, enabled=self.ctx.is_main)
            for message in early:
                self.logger.info(message)
            if self.ctx.is_main:
                atomic_write_text(self.run_dir / "config.yaml", config_to_yaml(config))
                self.record_run_info(resume)
        except BaseException:
            if hasattr(self, "logger"):
                self.logger.close()
            self.parts.close()
            self.restore_replaced_run()
            raise

    # -- lifetime --------------------------------------------------------------------------------
    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: Any) -> None:
        if error is not None and not isinstance(error, (KeyboardInterrupt, ConfigError)):
            self.logger.info(f"run failed: {type(error).__name__}: {error}")
        self.close()

    def close(self) -> None:
        """Close everything the run opened: progress display, log file, TensorBoard, environments.

        A run that replaced another (`overwrite=true`) and ends before its first last.ckpt puts
        the other one back.
        """
        self.logger.close()
        self.parts.close()
        self.restore_replaced_run()

    def restore_replaced_run(self) -> None:
        note = self.folder.abandon() if self.folder is not None else None
        if note is not None:
            console.print(note, highlight=False, markup=False)

    def record_run_info(self, resume: bool) -> None:
        """Write run_info.json (earlier sessions of a resumed run under `previous`) and log it."""
        info = run_info(self.parts.compute, self.ctx, resumed=resume)
        path = self.run_dir / "run_info.json"
        if resume and path.is_file():
            try:
                earlier = json.loads(path.read_text())
                info["previous"] = [*earlier.pop("previous", []), earlier]
            except (OSError, ValueError):
                pass
        atomic_write_text(path, json.dumps(info, indent=2))
        self.logger.log_run_info(info, self.parts.algorithm.global_step)

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
            self.logger.log_eval(split, metrics, self.parts.algorithm.global_step)
            if metrics["reward_mean"] > self.best.get(split, -float("inf")):
                self.best[split] = metrics["reward_mean"]
                summary = {k: v for k, v in metrics.items() if k != "episode_returns"}
                self.save(f"best_{split}.ckpt", eval_metrics=summary)
        return results

    def save(self, name: str, **extra: Any) -> None:
        if self.ctx.is_main:
            save_checkpoint(self.run_dir / name, checkpoint_payload(self.config, self.parts, best=self.best, **extra))
            if name == "last.ckpt":
                self.folder.commit()  # the run this one replaces (overwrite=true) can go now

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
