"""Run output: a rich progress bar, concise log lines, `train.log`, TensorBoard scalars, and CSVs.

`progress.csv` gets one row per logged training iteration and `eval.csv` one row per evaluation of
a split, so results read without TensorBoard (pandas, a spreadsheet, `duo-ai plot`). Both have a
fixed set of columns (`PROGRESS_COLUMNS`, `EVAL_COLUMNS`; an empty cell where a stat is missing),
are flushed after every row and are appended to on `--resume` (the header is written once).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from duo_ai.core.files import atomic_write_text

console = Console(stderr=True)

# The stats shown on each training log line, when the algorithm reports them (all go to TensorBoard).
TRAIN_LINE = (
    ("charts/sps", "sps", ".0f"),
    ("loss/entropy", "entropy", ".3f"),
    ("loss/approx_kl", "kl", ".4f"),
    ("loss/clip_fraction", "clip", ".3f"),
    ("loss/explained_variance", "ev", ".2f"),
    ("loss/minibatches", "minibatches", ".0f"),  # PPO with target_kl: the update's minibatch steps
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


# progress.csv: column -> the training stat it holds (None: written by the logger itself).
PROGRESS_STATS = {
    "iteration": None,
    "step": None,
    "time": None,  # seconds of training since the run started, summed over resumes
    "timestamp": None,  # Unix time of the row
    "episode_return": "charts/episode_return",
    "episode_length": "charts/episode_length",
    "episode_base_reward": "charts/episode_base_reward",  # coordination: the return without costs
    "episode_expert_fraction": "charts/episode_expert_fraction",  # coordination: expert steps / steps
    "sps": "charts/sps",
    "learning_rate": "charts/learning_rate",
    "policy_loss": "loss/policy",
    "value_loss": "loss/value",
    "entropy": "loss/entropy",
    "approx_kl": "loss/approx_kl",
    "clip_fraction": "loss/clip_fraction",
    "explained_variance": "loss/explained_variance",
    "rollout_seconds": "charts/rollout_seconds",
    "update_seconds": "charts/update_seconds",
}
PROGRESS_COLUMNS = tuple(PROGRESS_STATS)
# eval.csv: one row per split evaluated; the metrics keep the names of `duo-ai eval`'s JSON.
EVAL_COLUMNS = (
    "iteration",
    "step",
    "time",
    "timestamp",
    "split",
    "num_episodes",
    "temperature",
    "reward_mean",
    "reward_std",
    "reward_ci95",
    "episode_length_mean",
    "base_reward_mean",
    "expert_fraction",
)


def format_cell(value: Any) -> str:
    """A CSV cell: empty for a missing or non-finite number, 8 significant digits for a float."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.8g}"
    return str(value)


class CsvLog:
    """An append-only CSV with a fixed header, flushed after every row.

    Appending to an existing file keeps its rows and writes no second header; a last line cut
    short by a crash is dropped first, and so are rows logged after `resume_step` (the step the
    run resumes from), which the resumed run logs again. A file with fewer columns (written by an
    older duo-ai) is rewritten with the current header, its rows keeping their cells and leaving the
    new columns empty; a file with columns this version does not write is moved aside to
    `<name>.old.csv` rather than mixed with the new rows.
    """

    def __init__(self, path: Path, columns: tuple[str, ...], resume_step: int | None = None) -> None:
        self.path = path
        self.columns = columns
        self.last: dict[str, str] | None = None
        if path.is_file() and path.stat().st_size > 0:
            self._adopt_existing(resume_step)
        new = not path.is_file() or path.stat().st_size == 0
        self.file = open(path, "a", newline="")  # noqa: SIM115  (closed by close())
        if new:
            self._write_line(columns)

    def _adopt_existing(self, resume_step: int | None) -> None:
        text = self.path.read_text()
        complete = text[: text.rfind("\n") + 1]
        rows = list(csv.reader(io.StringIO(complete)))
        if not rows or not set(rows[0]) <= set(self.columns):
            self.path.replace(self.path.with_name(f"{self.path.stem}.old.csv"))
            return
        header = tuple(rows[0])
        if header != self.columns:  # an older layout with fewer columns: the same rows, the new header
            cells = (dict(zip(header, row, strict=False)) for row in rows[1:])
            rows = [list(self.columns), *([row.get(c, "") for c in self.columns] for row in cells)]
        step = self.columns.index("step")
        kept = [rows[0], *(r for r in rows[1:] if resume_step is None or int(r[step]) <= resume_step)]
        if complete != text or len(kept) != len(rows) or header != self.columns:
            buffer = io.StringIO()
            csv.writer(buffer, lineterminator="\n").writerows(kept)
            atomic_write_text(self.path, buffer.getvalue())
        if len(kept) > 1:
            self.last = dict(zip(self.columns, kept[-1], strict=False))

    def _write_line(self, cells: Any) -> None:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow(cells)
        self.file.write(buffer.getvalue())
        self.file.flush()

    def write(self, row: dict[str, Any]) -> None:
        """Append one row; columns missing from `row` stay empty."""
        self._write_line([format_cell(row.get(column)) for column in self.columns])

    def close(self) -> None:
        self.file.close()


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
        self.progress_csv: CsvLog | None = None
        self.eval_csv: CsvLog | None = None
        self.time_offset = 0.0  # training seconds of this run's earlier segments (from progress.csv)
        self.clock_start = time.perf_counter()
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
            self.progress_csv = CsvLog(run_dir / "progress.csv", PROGRESS_COLUMNS, resume_step)
            self.eval_csv = CsvLog(run_dir / "eval.csv", EVAL_COLUMNS, resume_step)
            # A resumed run's clock goes on from its last row (training or evaluation).
            times = [log.last.get("time") for log in (self.progress_csv, self.eval_csv) if log.last]
            self.time_offset = max((float(t) for t in times if t), default=0.0)
        self.info(
            f"run {config.name}: {config.env.name}/{config.env.task}, policy {config.policy.name}, "
            f"algorithm {config.algorithm.name}, folder {run_dir}"
        )

    def info(self, message: str) -> None:
        if self.enabled:
            self.log.info(message)

    def elapsed(self) -> float:
        """Seconds of training of this run, continuing the count of the segments before a resume."""
        return self.time_offset + time.perf_counter() - self.clock_start

    def start(self, total_iterations: int, done_iterations: int) -> None:
        self.clock_start = time.perf_counter()
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
        if self.progress_csv is not None:
            row = {column: stats.get(key) for column, key in PROGRESS_STATS.items() if key is not None}
            row.update(iteration=iteration, step=step, time=self.elapsed(), timestamp=f"{time.time():.3f}")
            self.progress_csv.write(row)
        ret = stats.get("charts/episode_return")
        parts = [f"iter {iteration} step {step:,}"] + ([] if ret is None else [f"return {ret:.2f}"])
        parts += [f"{label} {stats[key]:{fmt}}" for key, label, fmt in TRAIN_LINE if key in stats]
        self.info(" | ".join(parts))

    def log_scalar(self, key: str, value: float, step: int) -> None:
        """One scalar of the user's own (e.g. a training callback's): to TensorBoard under `key`, and a line."""
        if not self.enabled:
            return
        if self.writer is not None:
            self.writer.add_scalar(key, value, step)
        self.info(f"step {step:,} | {key} {value:.6g}")

    def log_eval(self, split: str, metrics: dict[str, Any], step: int, iteration: int | None = None) -> None:
        if not self.enabled:
            return
        if self.writer is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.writer.add_scalar(f"eval_{split}/{key}", value, step)
        if self.eval_csv is not None:
            row = {key: metrics.get(key) for key in EVAL_COLUMNS}
            row.update(iteration=iteration, step=step, split=split, time=self.elapsed(), timestamp=f"{time.time():.3f}")
            self.eval_csv.write(row)
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
        for log in (self.progress_csv, self.eval_csv):
            if log is not None:
                log.close()
        self.progress_csv = self.eval_csv = None
        for handler in list(self.log.handlers):
            handler.close()
            self.log.removeHandler(handler)
