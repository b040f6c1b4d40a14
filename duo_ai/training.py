"""A training run: one loop that iterates any `Algorithm`, logs, evaluates and saves.

The run folder `<experiments_dir>/<name>/` holds the resolved `config.yaml`, `run_info.json`
(what actually ran: device, precision, threads, versions, commit), `train.log`, TensorBoard events
under `tb/`, `progress.csv` and `eval.csv` (one row per logged iteration and per
evaluation), rolling checkpoints under `checkpoints/` with `last.ckpt` naming the newest (for
`--resume`), `best_<split>.ckpt` for each evaluation split and `summary.json`. Only the main
process writes files. The folder is checked and opened by `duo_ai.runs.RunFolder`:
`overwrite=true` keeps the old run aside until the new one has saved its first checkpoint.

    with Trainer(config) as trainer:   # builds everything (build.build_run), opens the run folder
        trainer.run()                  # iterate until the algorithm is done, evaluate, summarise
                                       # leaving the block closes display, TensorBoard and envs

`Trainer(config, callbacks=[...])` calls each callback's `on_iteration(trainer, stats)` after every
iteration (`TrainerCallback`): it may log a scalar of its own (`trainer.log_scalar`) and stop the
run by returning False, which ends it as a finished run ends (evaluated, `last.ckpt` saved,
`summary.json` written), and `--resume` can continue it.

Exact resume: every checkpoint is taken between iterations and holds the whole state (weights,
the algorithm's state with the games in flight, every RNG), and the state at the last iteration
boundary is what an interrupted run saves, so `--resume` continues as if never stopped.

Data-parallel (`torchrun --nproc-per-node N duo-ai train ...`): every process runs this same loop
on its share of the envs. Rank 0 alone writes the run folder and evaluates (the others wait for
it); at each iteration boundary it gathers every process's own state (envs, episodes, RNG) into
`rank_states`, so a checkpoint resumes each process exactly, with the same number of processes.

Longer than ~400 lines for one reason: the run's life (open, iterate, log, evaluate, save, resume,
stop) is one object whose order of steps is what makes resume exact; split, that order would be
spread over files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from duo_ai.build import build_run, device_name
from duo_ai.config import Config, check_world_size, config_to_dict, config_to_yaml, validate
from duo_ai.coordination.setup import embed_agents
from duo_ai.core import distributed
from duo_ai.core.checkpoint import CheckpointStore, load_checkpoint, save_checkpoint
from duo_ai.core.compute import resolve_device
from duo_ai.core.distributed import (
    ProcessContext,
    broadcast_object,
    gather_to_main,
    on_main,
    scatter_from_main,
    wait_for_main,
)
from duo_ai.core.errors import CheckpointError, ConfigError, TrainingDiverged
from duo_ai.core.files import atomic_write_text
from duo_ai.core.rng import get_rng_state, isolated_rng, set_rng_state
from duo_ai.evaluation import EVAL_SEED_OFFSET, EvalResult, evaluate
from duo_ai.logger import RunLogger, console
from duo_ai.runs import RunFolder, check_checkpoint_config, run_info


class TrainerCallback(Protocol):
    """What `Trainer(config, callbacks=[...])` calls after each iteration (like SB3's `callback.on_step`).

    `on_iteration` receives the trainer and the iteration's stats (TensorBoard names, e.g.
    `charts/episode_return`, `loss/approx_kl`), after they are logged and the iteration's state is
    taken (and saved, at `save_freq`). Returning False stops the run after this iteration; True or
    None goes on. Data-parallel, it runs in every process and rank 0's answer is every process's.
    """

    def on_iteration(self, trainer: Trainer, stats: dict[str, float]) -> bool | None: ...


class Trainer:
    """Owns one run: its parts (env, policy, algorithm), the logger and the checkpoints."""

    def __init__(
        self,
        config: Config,
        resume: bool = False,
        show_progress: bool = True,
        callbacks: Sequence[TrainerCallback] = (),
    ) -> None:
        self.config = config
        self.callbacks = list(callbacks)
        self.ctx = ProcessContext.from_env()
        self.run_dir = Path(config.experiments_dir) / config.name
        self.store = CheckpointStore(self.run_dir, config.keep_checkpoints)
        self.best: dict[str, float] = {}
        self.train_seconds, self.segments = 0.0, 1
        self.rank_states: list[dict[str, Any]] | None = None  # data-parallel, on rank 0: see gather_rank_states
        self.folder: RunFolder | None = None
        # Check the config, the experiments folder and the run folder, then build: a bad value,
        # game, split or agent fails before any folder is touched.
        validate(config)
        check_world_size(config, self.ctx.world_size)
        # What is opened below is closed again, in reverse order, if a later step fails; once the
        # trainer is built, closing is `close()`'s (leaving the `with` block).
        with contextlib.ExitStack() as undo:
            undo.callback(distributed.stop)  # a no-op where no process group was started
            self.join_job()
            # Messages of the build (e.g. the coordination set-up) reach train.log once it exists.
            early: list[str] = []
            self.folder = on_main(self.ctx, lambda: RunFolder(config, resume))
            undo.callback(self.restore_replaced_run)  # the folder's lock, the run it replaced
            agents = self.embedded_agents() if resume else None
            self.parts = build_run(config, self.ctx, log=early.append, agents=agents)
            undo.callback(self.parts.close)
            if self.ctx.distributed:  # what the build resolved into the config (a coordination run's base penalty)
                distributed.check_same_config(self.ctx, config_to_yaml(config), " after building")
            state = self.start(resume, show_progress, early, undo)
            if state is not None:
                set_rng_state(state["rng"])  # last, after everything that draws random numbers while building
            coordination = self.parts.make_env.coordination
            # A coordinator's checkpoints carry its novice and expert, so they work wherever they are moved.
            self.agents = embed_agents(config, coordination) if coordination is not None and self.ctx.is_main else None
            self.gather_rank_states()
            self.snapshot = self.payload() if self.ctx.is_main else None  # the state at the last iteration boundary
            self.snapshot_saved = state is not None  # a resumed run starts from what is on disk
            undo.pop_all()

    def embedded_agents(self) -> dict[str, Any] | None:
        """The novice and expert stored in the run's newest checkpoint (a resumed coordinator), if readable here."""
        try:
            return self.store.load_latest()[0].get("agents")
        except (CheckpointError, OSError):
            return None  # the resume itself reports it, or the agents come from the files the config names

    def join_job(self) -> None:
        """Data-parallel: join the other processes and check that all resolved the same config."""
        if not self.ctx.distributed:
            return
        device = resolve_device(device_name(self.config, self.ctx))
        distributed.start(self.ctx, device, self.config.distributed_timeout_s)
        distributed.check_same_config(self.ctx, config_to_yaml(self.config))

    def start(
        self, resume: bool, show_progress: bool, early: list[str], undo: contextlib.ExitStack
    ) -> dict[str, Any] | None:
        """Restore a resumed run, open the run folder and its logger (rank 0); returns the restored state.

        The logger's closing goes on `undo`, for a failure before the trainer is built.
        """
        state = self.restore(early) if resume else None
        self.finished = resume and self.parts.algorithm.done
        enabled = self.ctx.is_main and not self.finished
        on_main(self.ctx, lambda: self.folder.open(early.append) if enabled else None)
        resume_step = None if state is None else self.parts.algorithm.global_step
        self.logger = RunLogger(self.run_dir, self.config, show_progress, enabled, resume_step=resume_step)
        undo.callback(self.logger.close)
        for message in early:
            self.logger.info(message)
        if enabled:
            atomic_write_text(self.run_dir / "config.yaml", config_to_yaml(self.config))
            self.record_run_info(resume)
        return state

    def restore(self, early: list[str]) -> dict[str, Any]:
        """Load the newest readable checkpoint of the run into the parts; returns this process's state.

        Data-parallel, rank 0 reads it and hands each process its own part.
        """
        if self.ctx.distributed:
            state = scatter_from_main(on_main(self.ctx, lambda: self.states_of_ranks(self.read_checkpoint(early))))
        else:
            state = self.read_checkpoint(early)
        self.parts.policy.set_params(state["model_state_dict"])
        self.parts.algorithm.load_state_dict(state)
        if self.ctx.is_main:
            self.best = self.best_on_disk(state.get("best", {}))
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.segments = int(state.get("segments", 1)) + 1
        return state

    def read_checkpoint(self, early: list[str]) -> dict[str, Any]:
        """The newest readable checkpoint, checked to resume exactly with this many processes."""
        state, path, skipped = self.store.load_latest()
        for reason in skipped:
            early.append(f"resume: skipped an unreadable checkpoint ({reason})")
        if "rng" not in state and "rank_states" not in state:
            why = (
                "was exported (duo-ai export keeps what evaluating needs)"
                if "optim_state_dict" not in state
                else ("was written by an older duo-ai")
            )
            raise CheckpointError(
                f"{path} {why}, without the state to resume exactly; resume from a training checkpoint"
            )
        if isinstance(state.get("config"), dict):
            calibrated = (state.get("calibration") or {}).get("param")  # a calibration's current candidate
            learned = (f"policy.{calibrated}",) if calibrated else ()
            check_checkpoint_config(path, state["config"], self.config, learned)
        saved, now = int(state.get("world_size", 1)), self.ctx.world_size
        if saved != now:
            how = f"torchrun with {saved} processes in all" if saved > 1 else "one process (no torchrun)"
            raise ConfigError(
                f"cannot resume {self.run_dir} in {now} process(es): it was trained in {saved}, and each process's "
                f"envs and random streams are in its checkpoint; resume it with {how}"
            )
        early.append(f"resumed from {path} at step {int(state['global_step']):,} (iteration {int(state['iteration'])})")
        return state

    @staticmethod
    def states_of_ranks(state: dict[str, Any]) -> list[dict[str, Any]]:
        """A data-parallel checkpoint as each process's whole state: the shared part plus its own."""
        own = state.pop("rank_states")
        return [{**state, **rank_state} for rank_state in own]

    def best_on_disk(self, stored: dict[str, float]) -> dict[str, float]:
        """Best evaluation reward per split: the best_<split>.ckpt files are the truth (last.ckpt may be older)."""
        best = dict(stored)
        for path in self.run_dir.glob("best_*.ckpt"):
            try:
                reward = load_checkpoint(path)["eval_metrics"]["reward_mean"]
            except (CheckpointError, KeyError):
                continue
            split = path.stem.removeprefix("best_")
            best[split] = max(best.get(split, -float("inf")), float(reward))
        return best

    # -- lifetime --------------------------------------------------------------------------------
    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: Any) -> None:
        if error is not None and not isinstance(error, (KeyboardInterrupt, ConfigError, TrainingDiverged)):
            self.logger.info(f"run failed: {type(error).__name__}: {error}")
        try:
            self.close()
        except Exception as failure:
            if error is None:
                raise
            # What ended the run (an interrupt: exit 130, with its checkpoint saved) is what to
            # report; closing a writer or an environment that it stopped mid-call may fail too.
            console.print(f"while stopping: closing the run failed too ({type(failure).__name__}: {failure})")

    def close(self) -> None:
        """Close everything the run opened: progress display, log file, TensorBoard, environments.
        (A data-parallel run's process group lasts until the process ends: `--seeds` runs share it.)

        A run that replaced another (`overwrite=true`) and ends before its first checkpoint puts
        the other one back. Every step is tried (the run folder's lock is always released); the
        first failure is raised afterwards.
        """
        failures = []
        for step in (self.logger.close, self.parts.close, self.restore_replaced_run):
            try:
                step()
            except Exception as failure:
                failures.append(failure)
        if failures:
            raise failures[0]

    def restore_replaced_run(self) -> None:
        if self.folder is not None:
            self.folder.release()
        note = self.folder.abandon() if self.folder is not None else None
        if note is not None:
            console.print(note, highlight=False, markup=False)

    def record_run_info(self, resume: bool) -> None:
        """Write run_info.json (the earlier segments of a resumed run under `previous`) and log it."""
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
        if self.finished:
            return self.already_finished()
        clock, last_eval, results = time.perf_counter(), None, {}
        self.logger.start(algo.num_iterations, algo.iteration)
        try:
            while not algo.done:
                stats = algo.train_iteration()
                self.stop_if_diverged(stats)
                self.gather_rank_states()
                it = algo.iteration
                self.logger.update(it, algo.global_step, stats)
                if freq.log_freq > 0 and it % freq.log_freq == 0:
                    self.logger.log_train(stats, algo.global_step, it)
                if freq.eval_freq > 0 and it % freq.eval_freq == 0:
                    results, last_eval = self.evaluate_splits(), it
                self.train_seconds, clock = self.train_seconds + time.perf_counter() - clock, time.perf_counter()
                self.take_snapshot()
                if freq.save_freq > 0 and it % freq.save_freq == 0:
                    self.save_snapshot()
                if self.callbacks_say_stop(stats):
                    break
        except KeyboardInterrupt:
            # The state of the last finished iteration: a step counter never counts untrained steps.
            self.save_snapshot()
            if self.ctx.is_main:
                step = self.snapshot["global_step"]
                self.logger.info(f"interrupted; saved the state at step {step:,} to last.ckpt, resume with --resume")
            raise
        if last_eval != algo.iteration:
            results = self.evaluate_splits()
            self.take_snapshot()
        self.save_snapshot()
        return self.finish(results)

    def callbacks_say_stop(self, stats: dict[str, float]) -> bool:
        """Call every callback on this iteration; whether one returned False (rank 0's answer when data-parallel)."""
        if not self.callbacks:
            return False
        answers = [callback.on_iteration(self, stats) for callback in self.callbacks]
        stop = any(answer is not None and not answer for answer in answers)  # False, or numpy's
        if self.ctx.distributed:
            stop = broadcast_object(stop, "rank 0's callbacks' answer")
        if stop:
            algo = self.parts.algorithm
            self.logger.info(
                f"stopped by a callback after iteration {algo.iteration} of {algo.num_iterations} "
                f"(step {algo.global_step:,}); --resume continues the run"
            )
        return stop

    def log_scalar(self, key: str, value: float) -> None:
        """Log a scalar of one's own (a callback's, say `custom/best_return`) to TensorBoard and
        train.log at the current step; only rank 0 writes."""
        self.logger.log_scalar(key, value, self.parts.algorithm.global_step)

    def stop_if_diverged(self, stats: dict[str, float]) -> None:
        """Stop at the first iteration that left a weight NaN or infinite, keeping the last finite state.

        The weights are what is checked (the same on every process of a data-parallel run, whose
        gradients are averaged); a non-finite loss makes them so within its iteration. The state at
        the previous iteration boundary is saved as last.ckpt (if it trained anything), never the
        diverged one, and nothing is evaluated, so no best_<split>.ckpt holds it either.
        """
        params = [v for v in self.parts.policy.get_params().values() if torch.is_tensor(v) and v.is_floating_point()]
        if not params or bool(torch.stack([torch.isfinite(v).all() for v in params]).all()):
            return
        losses = [f"{k}={v:g}" for k, v in stats.items() if isinstance(v, float) and not math.isfinite(v)]
        kept = "nothing was saved (it diverged in its first iteration)"
        if self.ctx.is_main and self.snapshot["global_step"] > 0:
            self.save_snapshot()
            kept = f"last.ckpt keeps the last finite state (step {self.snapshot['global_step']:,})"
        algo = self.parts.algorithm
        raise TrainingDiverged(
            f"training diverged at iteration {algo.iteration} (step {algo.global_step:,}): the weights are no longer "
            f"finite{' (' + ', '.join(losses) + ')' if losses else ''}; stopped, and {kept}; lower "
            "algorithm.learning_rate (or use larger minibatches) and train again"
        )

    def evaluate_splits(self) -> dict[str, EvalResult]:
        """Evaluate on each `evaluation.splits`; keep `best_<split>.ckpt` of the best mean reward.

        Each evaluation draws from its own seeded random stream, so it neither shifts training's
        random numbers nor depends on them. Data-parallel, rank 0 evaluates while the others wait.
        """
        if self.config.evaluation.num_episodes < 1:
            return {}
        results = self.evaluate_here() if self.ctx.is_main else {}
        if self.ctx.distributed:
            wait_for_main()
        return results

    def evaluate_here(self) -> dict[str, EvalResult]:
        ev = self.config.evaluation
        results: dict[str, EvalResult] = {}
        for i, split in enumerate(ev.splits):
            seed = self.config.seed + EVAL_SEED_OFFSET * (i + 1)
            env = self.parts.make_env(split, min(ev.num_envs, ev.num_episodes))
            try:
                with isolated_rng(seed):
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
                self.write(self.run_dir / f"best_{split}.ckpt", {**self.payload(), "eval_metrics": summary})
        return results

    # -- checkpoints -----------------------------------------------------------------------------
    def payload(self) -> dict[str, Any]:
        """The whole state now (call between iterations): weights, configs, algorithm state, RNGs.

        Data-parallel (rank 0): each process's own part (`Algorithm.process_state_dict` and its
        RNGs) is under `rank_states`, in rank order, with `world_size`.
        """
        parts, per_rank = self.parts, self.rank_states is not None
        payload = {
            "model_state_dict": {k: v.cpu() for k, v in parts.policy.get_params().items()},
            "policy_config": dataclasses.asdict(parts.policy.config),
            "config": config_to_dict(self.config),
            # Data-parallel: this process's own part is already in rank_states (its envs' games
            # are not serialised twice an iteration).
            **(parts.algorithm.shared_state_dict() if per_rank else parts.algorithm.state_dict()),
            "best": dict(self.best),
            "train_seconds": self.train_seconds,
            "segments": self.segments,
            **({"agents": self.agents} if self.agents else {}),
        }
        if per_rank:
            payload.update(world_size=self.ctx.world_size, rank_states=self.rank_states)
        else:
            payload["rng"] = get_rng_state()
        return payload

    def gather_rank_states(self) -> None:
        """Data-parallel: every process's own state at this iteration boundary, gathered on rank 0."""
        if self.ctx.distributed:
            own = {**self.parts.algorithm.process_state_dict(), "rng": get_rng_state()}
            self.rank_states = gather_to_main(own)

    def take_snapshot(self) -> None:
        if self.ctx.is_main:
            self.snapshot, self.snapshot_saved = self.payload(), False

    def save_snapshot(self) -> None:
        """Write the last iteration boundary's state as the newest rolling checkpoint (once)."""
        if self.ctx.is_main and not self.snapshot_saved:
            self.store.save(self.snapshot, self.snapshot["global_step"])
            self.snapshot_saved = True
            self.folder.commit()  # the run this one replaces (overwrite=true) can go now

    def write(self, path: Path, payload: dict[str, Any]) -> None:
        if self.ctx.is_main:
            save_checkpoint(path, payload)

    # -- the end ---------------------------------------------------------------------------------
    def finish(self, results: dict[str, EvalResult]) -> dict[str, Any]:
        """Write summary.json (the whole run, over all its segments) and log the totals."""
        algo, seconds = self.parts.algorithm, self.train_seconds
        summary = {
            "run_dir": str(self.run_dir),
            "global_step": algo.global_step,
            "iterations": algo.iteration,
            "seconds": seconds,
            "sps": algo.global_step / seconds if seconds > 0 else 0.0,
            "segments": self.segments,
            "eval": {s: {k: v for k, v in r.metrics().items() if k != "episode_returns"} for s, r in results.items()},
        }
        if self.ctx.is_main:
            atomic_write_text(self.run_dir / "summary.json", json.dumps(summary, indent=2))
        self.logger.info(
            f"done: {summary['global_step']:,} steps in {seconds:.0f}s ({summary['sps']:.0f} SPS) over "
            f"{self.segments} segment(s); run folder {self.run_dir}"
        )
        return summary

    def already_finished(self) -> dict[str, Any]:
        """Resuming a finished run changes nothing: say so and return its summary."""
        algo = self.parts.algorithm
        if not self.ctx.is_main:
            return {}
        console.print(
            f"run {self.run_dir} already finished at step {algo.global_step:,} (iteration {algo.iteration}); "
            "nothing to do. To train longer, resume with a larger algorithm.total_timesteps",
            highlight=False,
            soft_wrap=True,  # one line whatever the terminal's width: a long run path must not break it
        )
        summary_path = self.run_dir / "summary.json"
        return json.loads(summary_path.read_text()) if summary_path.is_file() else {}
