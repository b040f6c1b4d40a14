"""Where a study's jobs run: what a job is, and the launcher that starts it.

A job is one `duo-ai` command line writing into the study folder (`Job`); the protocol decides what
it runs (a finished run reused, a stopped one resumed, a fresh one) before starting it. A launcher
starts it and hands back a `Running`, to wait for (its exit code) or stop:

- `LocalLauncher`: a subprocess of this process. With several jobs at once each gets one GPU
  (`CUDA_VISIBLE_DEVICES`, where there are GPUs) and, where the study leaves compute.num_threads
  at 0, its share of the CPU cores (`OMP_NUM_THREADS` and the runs' `num_threads`); otherwise
  nothing is set, as before.
- `duo_ai.study.slurm.SlurmLauncher`: a Slurm job through submitit (imported only for it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from duo_ai.core.errors import DuoAIError

# The same interpreter and code as this process (PYTHONPATH and all). -P: the current folder is not
# put first on sys.path, so a study started beside a yaml.py or torch.py does not run that file.
DUO = [sys.executable, "-P", "-m", "duo_ai_cli"]


class JobFailed(DuoAIError):
    """A job of the study failed: its own output says why."""

    exit_code = 1


@dataclass
class Job:
    """One `duo-ai` command of the study, as a launcher starts it."""

    name: str
    # duo-ai's arguments.
    command: list[str]
    # Where its output goes; None = this process's output (a local job run alone).
    log: Path | None = None
    # Without its stdout (an evaluation's metrics go to its JSON file).
    quiet: bool = False
    # A fresh training's run folder, and the command that resumes it: what the job runs instead once
    # the folder has a last.ckpt, so that a job started again (a Slurm requeue) never starts over.
    run: Path | None = None
    resume: list[str] | None = None

    def arguments(self) -> list[str]:
        """What to run now: the resume command where the run has a last.ckpt, else the command."""
        if self.run is not None and self.resume is not None and (self.run / "last.ckpt").is_file():
            return self.resume
        return self.command


class Running(ABC):
    """A started job."""

    @abstractmethod
    def wait(self) -> int:
        """Wait for the job to end; its exit code (a launcher's own failure raises `JobFailed`)."""

    @abstractmethod
    def stop(self) -> None:
        """Ask the job to stop (SIGTERM: a training saves its last.ckpt); `wait` then returns soon."""


class Launcher(ABC):
    """Starts the study's jobs."""

    # Each run's num_threads where the study's compute.num_threads is 0 (0: all the cores it sees).
    threads: int = 0

    @abstractmethod
    def start(self, job: Job, log: IO[str] | None) -> Running:
        """Start `job` (`log`: its log, open, where this process has it open; or None)."""


class LocalLauncher(Launcher):
    """Jobs as subprocesses of this process; with `jobs` > 1, one GPU each and a share of the cores."""

    def __init__(self, jobs: int = 1, num_threads: int = 0) -> None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        # The study's own num_threads (0: unset) is left as it is; unset, several jobs share the cores.
        self.threads = max(1, cores // jobs) if jobs > 1 and num_threads == 0 else 0
        self.gpus = GpuIds(visible_gpus() if jobs > 1 else [])

    def start(self, job: Job, log: IO[str] | None) -> Running:
        gpu = self.gpus.take()
        given = {"OMP_NUM_THREADS": str(self.threads)} if self.threads else {}
        given.update({} if gpu is None else {"CUDA_VISIBLE_DEVICES": gpu})
        try:
            process = subprocess.Popen(
                [*DUO, *job.arguments()],
                stdout=subprocess.DEVNULL if job.quiet else log,
                stderr=log,
                env={**os.environ, **given} if given else None,  # nothing given: this process's, as ever
            )
        except BaseException:
            self.gpus.give_back(gpu)
            raise
        return Subprocess(process, self.gpus, gpu)


class Subprocess(Running):
    """A local job: its process, and the GPU id it holds until it ends."""

    def __init__(self, process: subprocess.Popen, gpus: GpuIds, gpu: str | None) -> None:
        self.process, self.gpus, self.gpu = process, gpus, gpu

    def wait(self) -> int:
        code = self.process.wait()
        self.gpus.give_back(self.gpu)
        self.gpu = None
        return code

    def stop(self) -> None:
        self.process.terminate()


def visible_gpus() -> list[str]:
    """The GPU ids to hand out: this process's CUDA_VISIBLE_DEVICES if set, else every GPU torch sees."""
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [gpu.strip() for gpu in given.split(",") if gpu.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


class GpuIds:
    """The GPU ids of running jobs: each job takes the least used id (a free one while there is one),
    so with fewer GPUs than jobs the GPUs are shared as evenly as they can be."""

    def __init__(self, ids: list[str]) -> None:
        self.users = dict.fromkeys(ids, 0)
        self.lock = threading.Lock()

    def take(self) -> str | None:
        with self.lock:
            if not self.users:
                return None
            gpu = min(self.users, key=self.users.__getitem__)  # the first of the least used
            self.users[gpu] += 1
            return gpu

    def give_back(self, gpu: str | None) -> None:
        if gpu is not None:
            with self.lock:
                self.users[gpu] -= 1
