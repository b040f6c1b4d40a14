"""A study's jobs: `duo-ai` commands run in turn, or up to N at once each with its own log.

The study's launcher (`duo_ai.study.launchers`) starts each command: a subprocess here, or a Slurm
job. With one local job at a time a job writes to this process's output. With more (and every
Slurm job), each job appends to OUT/logs/<job>.log (appended: a rerun that only reuses a finished
run keeps the log of the run that did the work), and the first job that fails stops the others
(SIGTERM: a training saves its last.ckpt and resumes on the next run) and ends the study with one
line naming its log.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime
from pathlib import Path
from typing import IO

from duo_ai.core.errors import ConfigError
from duo_ai.study.launchers import Job, JobFailed, Launcher, LocalLauncher, Running
from duo_ai.study.schema import Study

# The commands that build a config, so take the study's `--import` modules too.
IMPORTING = ("train", "eval", "ask-map")
# Reads evaluation files and draws a figure in seconds: run here by any launcher, never queued.
HERE = ("study-report",)


class Output:
    """Where one job writes: its messages, and its subprocesses' output (this process's, or its log)."""

    def __init__(self, pool: Pool, name: str, log: IO[str] | None = None, log_path: Path | None = None) -> None:
        self.pool, self.name, self.log, self.log_path = pool, name, log, log_path

    def say(self, message: str) -> None:
        if self.log is None:
            print(message, flush=True)
        else:
            self.log.write(message + "\n")
            self.log.flush()

    def run(self, command: list[str], quiet: bool = False, resume: tuple[Path, list[str]] | None = None) -> None:
        """Run `duo-ai COMMAND...` to the end (`quiet`: without its stdout); a failure raises `JobFailed`.

        `resume`: a fresh training's run folder and the command that resumes it, which the job runs
        instead if it starts again once the folder has a last.ckpt."""
        sys.stderr.flush()
        imports = self.pool.imports if command[0] in IMPORTING else []
        job = Job(self.name, [*command, *imports], self.log_path, quiet)
        if resume is not None:
            job.run, job.resume = resume[0], [*resume[1], *imports]
        launcher = self.pool.here if command[0] in HERE else self.pool.launcher
        with self.pool.lock:  # none starts once the pool is stopping
            if self.pool.stopping:
                raise JobFailed(f"{self.name} was not started: the study is stopping")
            running = launcher.start(job, self.log)
            self.pool.jobs.add(running)
        try:
            code = running.wait()
        except BaseException:  # interrupted here (Ctrl-C, SIGTERM): the job ends with the study
            running.stop()
            running.wait()
            raise
        finally:
            with self.pool.lock:
                self.pool.jobs.discard(running)
        if code != 0:
            where = "its output is above" if job.log is None else f"see its log {job.log}"
            raise JobFailed(f"{self.name} failed (duo-ai {command[0]} exited with code {code}); {where}")


class Pool:
    """Runs jobs (functions of an `Output`): in turn with `size` 1, else up to `size` at once."""

    def __init__(
        self, size: int, logs: Path, imports: list[str] | None = None, launcher: Launcher | None = None
    ) -> None:
        # `imports`: `--import MODULE` arguments passed on to each job that builds a config.
        self.size, self.logs, self.imports = size, logs, imports or []
        self.launcher = launcher or LocalLauncher(size)
        self.here = LocalLauncher()
        self.lock = threading.Lock()
        self.stopping = False
        self.jobs: set[Running] = set()
        self.running: list[Future] = []
        self.executor = ThreadPoolExecutor(size) if size > 1 else None

    def now(self, name: str, work: Callable[[Output], None]) -> None:
        """Run a job here and now, on this process's output."""
        work(Output(self, name))

    def spawn(self, name: str, work: Callable[[Output], None]) -> None:
        """Run a job now (size 1), or in the background once fewer than `size` run."""
        if self.executor is None:
            return self.now(name, work)
        while len(self.running) >= self.size:
            self._wait()
        self.logs.mkdir(parents=True, exist_ok=True)
        log_path = self.logs / f"{name}.log"
        print(f"started {name} (log: {log_path})", flush=True)
        self.running.append(self.executor.submit(self._logged, name, log_path, work))

    def _logged(self, name: str, log_path: Path, work: Callable[[Output], None]) -> None:
        # O_NOFOLLOW: a link planted in logs/ is an error, never a way to append to a file elsewhere.
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "a") as log:
            log.write(f"== [{datetime.now():%Y-%m-%d %H:%M:%S}] {name}\n")
            log.flush()
            work(Output(self, name, log, log_path))

    def join(self) -> None:
        """Wait for every background job; the first failure stops the rest and is raised."""
        while self.running:
            self._wait()

    def _wait(self) -> None:
        done, _ = wait(self.running, return_when=FIRST_COMPLETED)
        for future in done:
            self.running.remove(future)
        for future in done:
            if future.exception() is not None:
                self.stop()
                raise future.exception()

    def stop(self) -> None:
        """Stop the running jobs (started here, by their own handles) and wait for them."""
        with self.lock:
            self.stopping = True
            for running in self.jobs:
                running.stop()
        if self.running:
            wait(self.running)
        self.running = []

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self.executor is not None:
            self.executor.shutdown()


def make_launcher(study: Study) -> Launcher:
    """The study's launcher (study key launcher), its settings checked before any work."""
    settings = study.launcher
    if settings.name == "local":
        return LocalLauncher(study.jobs, study.compute.num_threads)
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise ConfigError(
            "--launcher slurm submits the jobs through submitit, which is not installed; "
            "pip install submitit (scripts/setup.sh installs it), or use --launcher local"
        ) from None
    from duo_ai.study.slurm import SlurmLauncher

    return SlurmLauncher(settings, Path(study.out), study.compute.num_threads)
