"""A study's jobs: `duo-ai` subprocesses run in turn, or up to N at once each with its own log.

With one job at a time a job writes to this process's output. With more, each job appends to
OUT/logs/<job>.log (appended: a rerun that only reuses a finished run keeps the log of the run
that did the work), and the first job that fails stops the others (SIGTERM: a training saves its
last.ckpt and resumes on the next run) and ends the study with one line naming its log.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime
from pathlib import Path
from typing import IO

from duo_ai.core.errors import DuoAIError

# The same interpreter and code as this process (PYTHONPATH and all). -P: the current folder is not
# put first on sys.path, so a study started beside a yaml.py or torch.py does not run that file.
DUO = [sys.executable, "-P", "-m", "duo_ai_cli"]
# The commands that build a config, so take the study's `--import` modules too.
IMPORTING = ("train", "eval", "ask-map")


class JobFailed(DuoAIError):
    """A subprocess of the study failed: its own output says why."""

    exit_code = 1


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

    def run(self, command: list[str], quiet: bool = False) -> None:
        """Run `duo-ai COMMAND...` to the end (`quiet`: without its stdout); a failure raises `JobFailed`."""
        sys.stderr.flush()
        with self.pool.lock:  # none starts once the pool is stopping
            if self.pool.stopping:
                raise JobFailed(f"{self.name} was not started: the study is stopping")
            imports = self.pool.imports if command[0] in IMPORTING else []
            process = subprocess.Popen(
                [*DUO, *command, *imports], stdout=subprocess.DEVNULL if quiet else self.log, stderr=self.log
            )
            self.pool.processes.add(process)
        try:
            code = process.wait()
        except BaseException:  # interrupted here (Ctrl-C, SIGTERM): the subprocess ends with the study
            process.terminate()
            process.wait()
            raise
        finally:
            with self.pool.lock:
                self.pool.processes.discard(process)
        if code != 0:
            where = "its output is above" if self.log_path is None else f"see its log {self.log_path}"
            raise JobFailed(f"{self.name} failed (duo-ai {command[0]} exited with code {code}); {where}")


class Pool:
    """Runs jobs (functions of an `Output`): in turn with `size` 1, else up to `size` at once."""

    def __init__(self, size: int, logs: Path, imports: list[str] | None = None) -> None:
        # `imports`: `--import MODULE` arguments passed on to each job that builds a config.
        self.size, self.logs, self.imports = size, logs, imports or []
        self.lock = threading.Lock()
        self.stopping = False
        self.processes: set[subprocess.Popen] = set()
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
        """End the running subprocesses (started here, by their own handles) and wait for their jobs."""
        with self.lock:
            self.stopping = True
            for process in self.processes:
                process.terminate()
        if self.running:
            wait(self.running)
        self.running = []

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self.executor is not None:
            self.executor.shutdown()
