"""Run output: a rich progress bar, concise log lines, `train.log`, and TensorBoard scalars."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)

# The stats shown on each training log line, when the algorithm reports them (all go to TensorBoard).
TRAIN_LINE = (
    ("charts/sps", "sps", ".0f"),
    ("loss/entropy", "entropy", ".3f"),
    ("loss/approx_kl", "kl", ".4f"),
    ("loss/clip_fraction", "clip", ".3f"),
    ("loss/explained_variance", "ev", ".2f"),
    ("calibrate/num_candidates", "candidates", ".0f"),
    ("calibrate/candidate", "candidate", ".4g"),
    ("calibrate/reward", "validation reward", ".3f"),
    ("calibrate/expert_fraction", "expert fraction", ".3f"),
    ("calibrate/chosen", "chose", ".4g"),
)


def wait_for_a_later_second(tb_dir: Path) -> None:
    """TensorBoard reads event files in name order, and names start with the creation second: a
    resumed run's file must come after the earlier ones for its purge of their later steps to apply."""
    stamps = [int(p.name.split(".")[3]) for p in tb_dir.glob("events.out.tfevents.*") if p.name.split(".")[3].isdigit()]
    while stamps and int(time.time()) <= max(stamps):
        time.sleep(0.05)


class RunLogger:
    """Everything a run reports goes through here; disabled on non-main processes."""

    def __init__(
        self,
        run_dir: Path | None,
        config: Any,
        show_progress: bool = True,
        enabled: bool = True,
        resume_step: int | None = None,
    ) -> None:
        """`resume_step`: the step a resumed run continues from; TensorBoard hides what was logged after it."""
        self.enabled = enabled
        self.show_progress = show_progress and console.is_terminal
        self.log = logging.getLogger(f"duo_ai.run.{id(self)}")
        self.log.setLevel(logging.INFO)
        self.log.propagate = False
        self.writer = None
        self.bar: Progress | None = None
        self.task = None
        if not enabled:
            return
        self.log.addHandler(RichHandler(console=console, show_path=False, show_time=False, markup=False))
        if run_dir is not None:
            handler = logging.FileHandler(run_dir / "train.log")
            handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
            self.log.addHandler(handler)
            from torch.utils.tensorboard import SummaryWriter

            purge = None if resume_step is None else resume_step + 1
            if purge is not None:
                wait_for_a_later_second(run_dir / "tb")
            self.writer = SummaryWriter(str(run_dir / "tb"), purge_step=purge)
        self.info(
            f"run {config.name}: {config.env.name}/{config.env.task}, policy {config.policy.name}, "
            f"algorithm {config.algorithm.name}, folder {run_dir}"
        )

    def info(self, message: str) -> None:
        if self.enabled:
            self.log.info(message)

    def start(self, total_iterations: int, done_iterations: int) -> None:
        if not (self.enabled and self.show_progress):
            return
        self.bar = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            TextColumn("iter {task.completed:,.0f}/{task.total:,.0f}"),
            TextColumn("{task.fields[steps]} steps"),
            TextColumn("{task.fields[sps]} SPS"),
            TextColumn("return {task.fields[ret]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.bar.start()
        self.task = self.bar.add_task(
            "train", total=total_iterations, completed=done_iterations, steps="-", sps="-", ret="-"
        )

    def update(self, iteration: int, step: int, stats: dict[str, float]) -> None:
        if self.bar is not None:
            ret, sps = stats.get("charts/episode_return"), stats.get("charts/sps")
            self.bar.update(
                self.task,
                completed=iteration,
                steps=f"{step:,}",
                sps="-" if sps is None else f"{sps:.0f}",
                ret="-" if ret is None else f"{ret:.2f}",
            )

    def log_train(self, stats: dict[str, float], step: int, iteration: int) -> None:
        if not self.enabled:
            return
        if self.writer is not None:
            for key, value in stats.items():
                self.writer.add_scalar(key, value, step)
        ret = stats.get("charts/episode_return")
        parts = [f"iter {iteration} step {step:,}"] + ([] if ret is None else [f"return {ret:.2f}"])
        parts += [f"{label} {stats[key]:{fmt}}" for key, label, fmt in TRAIN_LINE if key in stats]
        self.info(" | ".join(parts))

    def log_eval(self, split: str, metrics: dict[str, Any], step: int) -> None:
        if not self.enabled:
            return
        if self.writer is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.writer.add_scalar(f"eval_{split}/{key}", value, step)
        extra = "".join(
            f" | {key} {metrics[key]:.3f}" for key in ("base_reward_mean", "expert_fraction") if key in metrics
        )
        self.info(
            f"eval {split} step {step:,} | reward {metrics['reward_mean']:.2f} ± {metrics['reward_ci95']:.2f} "
            f"over {metrics['num_episodes']} episodes | length {metrics['episode_length_mean']:.0f}{extra}"
        )

    def log_run_info(self, info: dict[str, Any], step: int) -> None:
        """What ran (run_info.json): one log line, and a TensorBoard text table under `run_info`."""
        if not self.enabled:
            return
        versions = ", ".join(f"{k} {v}" for k, v in info.get("versions", {}).items())
        commit = f", commit {info['git_commit'][:12]}" if "git_commit" in info else ""
        self.info(
            f"running on {info['device']} ({info['precision']}, {info['num_threads']} threads, "
            f"world size {info['world_size']}); {versions}{commit}"
        )
        if self.writer is not None:
            rows = [(k, v) for k, v in info.items() if k not in ("versions", "previous")]
            rows += [(f"version {k}", v) for k, v in info.get("versions", {}).items()]
            table = "\n".join(["| key | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])
            self.writer.add_text("run_info", table, step)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        for handler in list(self.log.handlers):
            handler.close()
            self.log.removeHandler(handler)
