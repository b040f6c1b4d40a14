"""`--launcher slurm`: each job of a study a Slurm job, submitted through submitit.

The study (the driver) submits one Slurm job per `duo-ai` command, the jobs that reach it within
`BATCH_S` of each other (a stage's) as one job array; it records each submission in
OUT/launcher/<job>.json and waits for the jobs, as it waits for its subprocesses with the local
launcher. On the node, `NodeJob` runs the command as a subprocess, its output appended to
OUT/logs/<job>.log; submitit's own files (the pickled job, its result, the batch script and
submitit's log) are in OUT/launcher/submitit/. The study folder must be on a file system the nodes
share.

Time limit and preemption: Slurm sends USR2 (`--signal=USR2@90`, before the limit or on
preemption) and submitit calls `NodeJob.checkpoint`, which stops the command with SIGTERM (a
training saves its last.ckpt) and requeues the job (`--requeue`); the requeued job finds the run's
last.ckpt and resumes it (`Job.arguments`). A SIGTERM from Slurm (scancel, a preemption without the
signal) reaches the command too; the job then ends without a result, so that a requeued job runs
again and a cancelled one reads as failed.

A driver that died leaves its jobs queued or running. Its rerun re-attaches to each job still
queued or running (its record, and Slurm's state) instead of submitting it again, and submits what
is missing or failed; a finished job is never submitted again (the protocol reuses what it wrote).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Any

import submitit
from submitit.core.utils import DelayedSubmission, FailedJobError, UncompletedJobError

from duo_ai.core.errors import ConfigError
from duo_ai.core.files import atomic_write_text
from duo_ai.study.launchers import DUO, Job, JobFailed, Launcher, Running

if TYPE_CHECKING:  # not imported on the nodes, where a job loads this module: it would import torch
    from duo_ai.study.schema import Launcher as LauncherSettings

# Jobs that reach the launcher within this long of the first queued one are submitted together,
# as one job array: a stage's jobs arrive within moments of each other (file checks only).
BATCH_S = 0.2
# How often the driver looks for a job's result file (on a cluster's shared file system; Slurm's
# state at submitit's own pace), or a local job's process; and a job for its command's end.
POLL_S = {"slurm": 2.0, "local": 0.1}
COMMAND_POLL_S = 0.1
# Slurm states of a job that may still run: a rerun re-attaches to a job in one of them.
ACTIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "RESIZING", "SUSPENDED")
TERMINATED = 128 + signal.SIGTERM


class SlurmLauncher(Launcher):
    """Submits each job through submitit's AutoExecutor (cluster `slurm`, or `local` to run the same
    submission path on this machine) and waits for it."""

    def __init__(self, settings: LauncherSettings, out: Path, num_threads: int = 0) -> None:
        if settings.cluster == "slurm" and submitit.SlurmExecutor.affinity() <= 0:
            raise ConfigError(
                "--launcher slurm: no Slurm on this machine (srun is not on PATH); start the study on the "
                "cluster's login node, or pass launcher.cluster=local to run the submission path here"
            )
        self.settings, self.out = settings, out
        self.threads = num_threads or settings.cpus_per_task
        self.kind = "Slurm" if settings.cluster == "slurm" else "local submitit"
        self.folder = out / "launcher" / "submitit"
        self.queue: list[Submitted] = []
        self.first_queued = 0.0
        self.lock, self.submitting = threading.Lock(), threading.Lock()
        # submitit's job state watcher (one sacct call for every job) is shared and not thread-safe.
        self.watching = threading.Lock()
        self.executor: Any = None

    def parameters(self) -> dict[str, Any]:
        """submitit's AutoExecutor parameters: each job's resources, and the batch script's extras."""
        s = self.settings
        return {
            "name": f"duo-ai_{self.out.name}",
            "timeout_min": s.time_min,
            "gpus_per_node": s.gpus_per_job or None,
            "cpus_per_task": s.cpus_per_task,
            "mem_gb": s.mem_gb,
            "slurm_partition": s.partition,
            "slurm_setup": s.setup or None,
            # Requeueable (scontrol requeue after the time limit's signal, a preemption's requeue).
            "slurm_additional_parameters": {"requeue": True, **s.sbatch},
        }

    def open_executor(self) -> Any:
        """The executor, made at the first submission (it creates its folder)."""
        if self.executor is None:
            executor = submitit.AutoExecutor(folder=self.folder, cluster=self.settings.cluster)
            executor.update_parameters(**self.parameters())
            self.executor = executor
        return self.executor

    def start(self, job: Job, log: IO[str] | None) -> Running:
        job.log = job.log or self.out / "logs" / f"{job.name}.log"
        job.log.parent.mkdir(parents=True, exist_ok=True)
        running = Submitted(self, job)
        earlier = self.attach(job)
        if earlier is not None:
            print(f"re-attached {job.name} to {self.kind} job {earlier.job_id}, still queued or running", flush=True)
            running.submitted(earlier)
            return running
        with self.lock:
            if not self.queue:
                self.first_queued = time.monotonic()
            self.queue.append(running)
        return running

    def submit_queued(self) -> None:
        """Submit the queued jobs, `BATCH_S` after the first of them was queued, as one job array."""
        with self.submitting:
            with self.lock:
                if not self.queue:
                    return
                delay = self.first_queued + BATCH_S - time.monotonic()
            time.sleep(max(0.0, delay))
            with self.lock:
                queue, self.queue = [r for r in self.queue if not r.stopped], []
            if queue:
                self.submit(queue)

    def submit(self, queue: list[Submitted]) -> None:
        executor = self.open_executor()
        env = {"OMP_NUM_THREADS": str(self.threads)}
        try:
            with executor.batch():
                handles = [executor.submit(NodeJob(r.job, env)) for r in queue]
        except Exception as e:  # sbatch refused them (a partition, an account), or could not run
            why = " ".join(str(e).split())[:500]
            for running in queue:
                running.failed(f"{running.job.name} could not be submitted ({type(e).__name__}: {why})")
            return
        for running, handle in zip(queue, handles, strict=True):  # first: a driver killed now leaves them
            self.record(running.job, handle.job_id)
        for running, handle in zip(queue, handles, strict=True):
            print(f"submitted {running.job.name} as {self.kind} job {handle.job_id} (log: {running.job.log})")
            running.submitted(handle)
        sys.stdout.flush()

    # -- the records of submitted jobs, for a rerun ----------------------------------------------
    def record_path(self, name: str) -> Path:
        return self.out / "launcher" / f"{name}.json"

    def record(self, job: Job, job_id: str) -> None:
        """OUT/launcher/<job>.json: the job's latest submission, and every one before it."""
        earlier = self.read_record(job.name) or {}
        record = {
            "job_id": job_id,
            "cluster": self.settings.cluster,
            "submitted_at": datetime.now().isoformat(timespec="seconds"),
            "command": ["duo-ai", *job.command],
            "log": str(job.log),
            "submissions": [*earlier.get("submissions", []), job_id],
        }
        atomic_write_text(self.record_path(job.name), json.dumps(record, indent=2) + "\n")

    def read_record(self, name: str) -> dict[str, Any] | None:
        try:
            record = json.loads(self.record_path(name).read_text())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) and isinstance(record.get("job_id"), str) else None

    def attach(self, job: Job) -> Any:
        """The job an earlier driver submitted for `job`, if it is still queued or running; else None."""
        record = self.read_record(job.name)
        if record is None or record.get("cluster") != self.settings.cluster:
            return None
        if self.settings.cluster == "local":
            handle = submitit.LocalJob(self.folder, record["job_id"])
            handle._process = Controller(int(record["job_id"]), self.folder)  # the driver that started it died
            active = handle._process.poll() is None
        else:
            handle = submitit.SlurmJob(self.folder, record["job_id"])
            active = handle.state.split()[0] in ACTIVE
        return handle if active and not handle.paths.result_pickle.exists() else None


class Submitted(Running):
    """A job of the Slurm launcher: queued here, then submitted (or re-attached to)."""

    def __init__(self, launcher: SlurmLauncher, job: Job) -> None:
        self.launcher, self.job = launcher, job
        self.handle: Any = None
        self.error: str | None = None
        self.stopped = False
        self.ready = threading.Event()

    def submitted(self, handle: Any) -> None:
        self.handle = handle
        self.ready.set()

    def failed(self, error: str) -> None:
        self.error = error
        self.ready.set()

    def wait(self) -> int:
        poll_s = POLL_S[self.launcher.settings.cluster]
        while not self.ready.is_set() and not self.stopped:
            self.launcher.submit_queued()
            self.ready.wait(poll_s)
        if self.error is not None:
            raise JobFailed(self.error)
        while not self.stopped and not self.done():
            time.sleep(poll_s)
        if self.stopped:  # cancelled: Slurm ends it, and a rerun resumes it
            return TERMINATED
        return self.outcome()

    def done(self) -> bool:
        with self.launcher.watching:
            return self.handle.done()

    def outcome(self) -> int:
        """The command's exit code; a job that ended without one (killed, cancelled, out of memory) fails."""
        try:
            return int(self.handle.result())
        except (UncompletedJobError, FailedJobError) as e:
            state = self.handle.state
            raise JobFailed(
                f"{self.job.name} ({self.launcher.kind} job {self.handle.job_id}, {state}) ended without the "
                f"command's exit code; see its log {self.job.log} and submitit's in {self.launcher.folder}"
                + ("" if isinstance(e, UncompletedJobError) else " (the job's wrapper failed)")
            ) from None

    def stop(self) -> None:
        self.stopped = True
        if self.handle is None:
            return
        if self.launcher.settings.cluster == "local":
            # Its controller passes SIGTERM on to the job, which stops its command; submitit's cancel
            # (SIGINT) would interrupt the controller itself, with a traceback on this process's output.
            Controller(int(self.handle.job_id), self.launcher.folder).send_signal(signal.SIGTERM)
            return
        try:
            self.handle.cancel(check=False)
        except OSError:  # no scancel: nothing to cancel with
            pass


class Controller:
    """A local submitit job's controller process that an earlier driver started: Popen's `poll` and
    `send_signal`, which submitit's LocalJob uses, for a process that is not this one's child."""

    def __init__(self, pid: int, folder: Path) -> None:
        self.pid, self.folder = pid, folder

    def poll(self) -> int | None:
        """None while the process runs submitit's controller on this folder (not a reused pid), else 0."""
        try:
            command = Path(f"/proc/{self.pid}/cmdline").read_bytes().split(b"\0")
        except OSError:  # ended (or no /proc to tell, and then not re-attached to)
            return 0
        running = b"submitit.local._local" in command and os.fsencode(self.folder) in command
        return None if running else 0

    def send_signal(self, signum: int) -> None:
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass


class NodeJob(submitit.helpers.Checkpointable):
    """A study job as submitit runs it: the `duo-ai` command as a subprocess, appending to its log."""

    def __init__(self, job: Job, env: dict[str, str]) -> None:
        self.job, self.env = job, env
        self.process: subprocess.Popen | None = None
        self.terminated = False

    def __call__(self) -> int:
        # submitit's own SIGTERM handler only logs it; the command gets Slurm's SIGTERM itself (Slurm
        # signals every process of a job), or from `on_sigterm` under submitit's local controller.
        signal.signal(signal.SIGTERM, self.on_sigterm)
        arguments = self.job.arguments()
        with open(self.job.log, "a") as log:
            where = os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_LOCAL_JOB_ID", "?")
            resumes = ", resuming its run" if arguments is self.job.resume else ""
            log.write(f"== [{datetime.now():%Y-%m-%d %H:%M:%S}] {self.job.name}: job {where} on {socket.gethostname()}")
            log.write(f"{resumes}\n")
            log.flush()
            self.process = subprocess.Popen(
                [*DUO, *arguments],
                stdout=subprocess.DEVNULL if self.job.quiet else log,
                stderr=log,
                env={**os.environ, **self.env},
                preexec_fn=ignore_usr2,
            )
            try:
                # Polled, not waited for: submitit's USR2 handler (`checkpoint`) waits for it too.
                while self.process.poll() is None:
                    time.sleep(COMMAND_POLL_S)
            except BaseException:  # cancelled (a local job's SIGINT), or requeued by `checkpoint`
                self.process.terminate()
                raise
        if self.terminated:  # no result: a requeued job runs again, a cancelled one reads as failed
            os._exit(TERMINATED)
        return self.process.returncode

    def on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self.terminated = True
        if os.environ.get("SUBMITIT_EXECUTOR") == "local" and self.process is not None:
            self.process.terminate()  # submitit's local controller signals this process alone

    def checkpoint(self) -> DelayedSubmission:
        """On USR2 (the time limit is near, or a preemption): stop the command (a training saves its
        last.ckpt) and requeue this job, which then resumes the run."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            while self.process.poll() is None:
                time.sleep(COMMAND_POLL_S)
        return DelayedSubmission(NodeJob(self.job, self.env))

    def __getstate__(self) -> dict[str, Any]:
        return {"job": self.job, "env": self.env, "process": None, "terminated": False}


def ignore_usr2() -> None:
    """In the command's process: Slurm's USR2 goes to every process of the job, and is the wrapper's
    to act on (it stops the command with SIGTERM); ignored, it would end a training without saving."""
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
