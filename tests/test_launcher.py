"""Where a study's jobs run: the local launcher's GPU and threads per job, and `--launcher slurm`
through submitit, without a Slurm cluster.

submitit's local executor (`launcher.cluster=local`) runs the Slurm launcher's own submission path
on this machine: each job pickled, started as its own process with its own log, waited for,
re-attached to by a rerun of a driver that was killed, and requeued (submitit's local requeue) when
it is sent the time limit's signal. What it does not run is Slurm: the batch script submitit writes
for sbatch is checked against what sbatch reads.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from duo_ai.study.jobs import Pool
from duo_ai.study.launchers import GpuIds, Job, JobFailed
from duo_ai.study.schema import Launcher
from duo_ai.study.slurm import SlurmLauncher
from tests.conftest import TINY, assert_user_error, cli

ROOT = Path(__file__).resolve().parents[1]
SLURM_HERE = ("--launcher", "slurm", "launcher.cluster=local")
# A MiniGrid agent of 25 iterations of 4 envs x 32 steps, saving last.ckpt after each.
AGENT = ["-c", "minigrid_agent", *(o for o in TINY if not o.startswith(("env.task=", "algorithm.total_timesteps=")))]
AGENT += ["algorithm.total_timesteps=3200", "evaluation.num_episodes=0"]
# sbatch's long options (`man sbatch`, Slurm 23): a batch script's #SBATCH lines may name only these.
SBATCH_OPTIONS = set(
    """account acctg-freq array batch bb bbf begin chdir cluster-constraint clusters comment constraint
    container container-id contiguous core-spec cores-per-socket cpu-freq cpus-per-gpu cpus-per-task
    deadline delay-boot dependency distribution error exclude exclusive export export-file
    extra-node-info get-user-env gid gpu-bind gpu-freq gpus gpus-per-node gpus-per-socket gpus-per-task
    gres gres-flags hint hold ignore-pbs input job-name kill-on-invalid-dep licenses mail-type mail-user
    mcs-label mem mem-bind mem-per-cpu mem-per-gpu mincpus network nice no-kill no-requeue nodefile
    nodelist nodes ntasks ntasks-per-core ntasks-per-gpu ntasks-per-node ntasks-per-socket open-mode
    output overcommit oversubscribe parsable partition power prefer priority profile propagate qos quiet
    reboot requeue reservation signal sockets-per-node spread-job switches test-only thread-spec
    threads-per-core time time-min tmp tres-per-task uid use-min-nodes verbose wait wait-all-nodes wckey
    wrap""".split()
)


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--launcher", "pbs"], ["launcher.name='pbs'", "one of local, slurm"]),
        ([*SLURM_HERE, "launcher.gpus_per_job=-1"], ["launcher.gpus_per_job=-1", ">= 0"]),
        ([*SLURM_HERE, "launcher.partition="], ["'launcher.partition=' has no value", "launcher.partition=gpu"]),
        ([*SLURM_HERE, "launcher.partition=''"], ["launcher.partition=''", "a partition name, or null"]),
        ([*SLURM_HERE, "launcher.time_min=0"], ["launcher.time_min=0", ">= 1"]),
        (["--launcher", "slurm", "launcher.cluster=pbs"], ["launcher.cluster='pbs'", "one of slurm, local"]),
        (["launcher.bogus=1"], ["unknown study key 'launcher.bogus'"]),
    ],
)
def test_bad_launcher_settings_are_one_line_before_any_job(tmp_path, args, fragments):
    out = tmp_path / "study"
    assert_user_error(cli("study", "minigrid_smoke", "--out", out, *args), *fragments)
    assert not out.exists()


@pytest.mark.skipif(shutil.which("srun") is not None, reason="a Slurm machine: submitit finds its srun")
def test_slurm_where_there_is_none_is_one_line_naming_the_local_cluster(tmp_path):
    out = tmp_path / "study"
    assert_user_error(
        cli("study", "minigrid_smoke", "--out", out, "--launcher", "slurm"),
        "no Slurm on this machine (srun is not on PATH)", "launcher.cluster=local",
    )  # fmt: skip
    assert not out.exists()


def test_without_submitit_the_slurm_launcher_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # `import submitit` fails as if it were not installed
    out = tmp_path / "study"
    assert_user_error(cli("study", "minigrid_smoke", "--out", out, *SLURM_HERE), "submitit, which is not installed")
    assert not out.exists()


def test_gpu_ids_go_to_the_least_used_and_come_back():
    gpus = GpuIds(["0", "1"])
    assert [gpus.take(), gpus.take(), gpus.take()] == ["0", "1", "0"]  # three jobs on two GPUs: one shared
    gpus.give_back("1")
    assert gpus.take() == "1"
    assert GpuIds([]).take() is None  # no GPU: nothing is set


@pytest.mark.slow(seconds=25)
def test_two_jobs_at_once_get_one_gpu_id_each_and_a_share_of_the_cores(tmp_path, monkeypatch):
    """`--jobs 2` with two GPU ids given to the study: each job's run_info.json says which it got."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")  # the ids are handed out; no GPU is needed for that
    out = tmp_path / "study"
    result = cli("study", "minigrid_smoke", "--out", out, "--jobs", "2", "--gate-only", "compute.num_threads=0")
    assert result.exit_code == 0, result.output
    info = {run: json.loads((out / run / "run_info.json").read_text()) for run in ("novice", "expert")}
    assert sorted(i["cuda_visible_devices"] for i in info.values()) == ["0", "1"]  # trained at once
    threads = max(1, len(os.sched_getaffinity(0)) // 2)
    assert [i["num_threads"] for i in info.values()] == [threads, threads]
    for run in ("always_novice", "always_expert"):  # in turn: each takes the first id, free again
        assert json.loads((out / run / "run_info.json").read_text())["cuda_visible_devices"] == "0"


def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`srun` and `sbatch` on PATH: submitit takes this machine for a Slurm login node. The sbatch keeps
    each batch script it is given (the folder returned) and answers as sbatch does; the scripts are
    submitit's own, from the launcher's settings, and are what the test reads."""
    bin_, scripts = tmp_path / "bin", tmp_path / "sbatch"
    bin_.mkdir()
    scripts.mkdir()
    (bin_ / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_ / "sbatch").write_text(
        f'#!/bin/sh\nn=$((100 + $(ls "{scripts}" | wc -l)))\ncp "$1" "{scripts}/$n.sh"\necho "Submitted batch job $n"\n'
    )
    for tool in bin_.iterdir():
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}{os.pathsep}{os.environ['PATH']}")
    return scripts


def sbatch_lines(script: str) -> tuple[dict[str, str | None], list[str]]:
    """A batch script's #SBATCH options (name -> value) and its command lines, checked for sbatch:
    the shebang first, and every #SBATCH line before the first command (sbatch reads no further)."""
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    commands = [i for i, line in enumerate(lines) if line.strip() and not line.startswith("#")]
    options = {}
    for i, line in enumerate(lines):
        if line.startswith("#SBATCH"):
            assert i < commands[0], line
            name, value = re.fullmatch(r"#SBATCH --([a-z-]+)(?:=(\S+))?", line).groups()
            assert name in SBATCH_OPTIONS, line
            options[name] = value
    return options, [lines[i] for i in commands]


def test_a_stage_is_one_job_array_whose_batch_script_asks_for_the_launcher_settings(tmp_path, monkeypatch):
    scripts = fake_slurm(tmp_path, monkeypatch)
    settings = Launcher(
        name="slurm", partition="gpu", time_min=90, gpus_per_job=1, cpus_per_task=6, mem_gb=12,
        setup=["module load cuda"], sbatch={"account": "myproject"},
    )  # fmt: skip
    out = tmp_path / "study"
    launcher = SlurmLauncher(settings, out)
    evals = [launcher.start(Job(f"eval_{i}", ["eval", "--checkpoint", f"m{i}.ckpt"]), None) for i in range(3)]
    launcher.submit_queued()  # what the first job to wait does: the queued jobs go at once
    assert [job.handle.job_id for job in evals] == ["100_0", "100_1", "100_2"]
    options, commands = sbatch_lines((scripts / "100.sh").read_text())
    assert options["array"] == "0-2%3" and options["partition"] == "gpu" and options["account"] == "myproject"
    assert options["time"] == "90" and options["gpus-per-node"] == "1" and options["cpus-per-task"] == "6"
    assert options["mem"] == "12GB" and options["nodes"] == "1"
    # USR2 90 s before the time limit, when the job saves and requeues itself; requeueable; logs appended.
    assert options["signal"] == "USR2@90" and "requeue" in options and options["open-mode"] == "append"
    folder = out / "launcher" / "submitit"
    assert options["output"] == f"{folder}/%A_%a_0_log.out"
    assert commands[0] == "module load cuda" and commands[1] == "export SUBMITIT_EXECUTOR=slurm"
    assert commands[2].startswith("srun --unbuffered --output ")
    assert commands[2].endswith(f"{sys.executable} -u -m submitit.core._submit {folder}")
    # Each task's pickled job: its duo-ai command, its log, and the threads its share of the node allows.
    node_job = evals[1].handle.submission().function
    assert node_job.job.command == ["eval", "--checkpoint", "m1.ckpt"] and node_job.env == {"OMP_NUM_THREADS": "6"}
    assert node_job.job.log == out / "logs" / "eval_1.log"
    record = json.loads((out / "launcher" / "eval_1.json").read_text())
    assert record["job_id"] == "100_1" and record["submissions"] == ["100_1"] and record["cluster"] == "slurm"

    report = launcher.start(Job("alone", ["eval", "--checkpoint", "m.ckpt"]), None)
    launcher.submit_queued()
    assert report.handle.job_id == "101"
    options, _ = sbatch_lines((scripts / "101.sh").read_text())
    assert "array" not in options and options["output"] == f"{folder}/%j_0_log.out"


def children(pid: int) -> list[int]:
    """A process's children (Linux's /proc)."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def process_under(pid: int, command: bytes) -> int:
    """The first process under `pid` whose command line holds `command`, waited for (a job starting)."""
    for _ in range(300):
        found, todo = [], children(pid)
        while todo:
            child = todo.pop()
            todo += children(child)
            try:
                if command in Path(f"/proc/{child}/cmdline").read_bytes():
                    found.append(child)
            except OSError:
                pass
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no process running {command!r} under process {pid}")


def wait_for(condition, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.slow(seconds=25)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the job's process in /proc")
def test_a_training_sent_the_time_limit_signal_is_requeued_and_resumes_from_its_last_ckpt(tmp_path):
    out = tmp_path / "study"
    run = out / "agent"
    fresh = ["train", *AGENT, f"experiments_dir={out}", "name=agent", "overwrite=true", "--no-progress"]
    resume = ["train", "--resume", str(run), "--no-progress"]
    launcher = SlurmLauncher(Launcher(name="slurm", cluster="local"), out)
    with Pool(2, out / "logs", launcher=launcher) as pool:
        pool.spawn("agent", lambda job: job.run(fresh, resume=(run, resume)))
        record = out / "launcher" / "agent.json"
        wait_for(lambda: (run / "last.ckpt").is_file() and record.is_file())
        controller = int(json.loads(record.read_text())["job_id"])
        task = process_under(controller, b"submitit.core._submit")
        os.kill(task, signal.SIGUSR2)  # what Slurm sends before the time limit
        pool.join()
    info = json.loads((run / "run_info.json").read_text())
    assert info["resumed"] is True and [p["resumed"] for p in info["previous"]] == [False]  # two segments
    assert json.loads((run / "summary.json").read_text())["global_step"] == 3200
    assert f"Requeued job {controller}" in (out / "launcher" / "submitit" / f"{controller}_0_log.out").read_text()
    log = " ".join((out / "logs" / "agent.log").read_text().split())  # the training's lines, unwrapped
    assert "to last.ckpt, resume with --resume" in log  # stopped by the job (SIGTERM), it saved
    assert log.count(f"agent: job {controller} on ") == 2 and ", resuming its run" in log
    assert json.loads(record.read_text())["submissions"] == [str(controller)]  # requeued, never submitted again


def running(text: str) -> list[int]:
    """The live processes (not zombies) whose command line holds `text`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            alive = "State:\tZ" not in (proc / "status").read_text()
            if alive and text.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except (OSError, ValueError):
            pass
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="looks for the jobs' processes in /proc")
def test_a_failed_submitted_job_stops_the_study_naming_its_log_and_cancels_the_others(tmp_path):
    out = tmp_path / "study"
    long = ["train", *AGENT, "algorithm.total_timesteps=10000000", f"experiments_dir={out}", "name=long"]
    launcher = SlurmLauncher(Launcher(name="slurm", cluster="local"), out)
    with pytest.raises(JobFailed, match=r"eval_x failed .*exited with code 2.*see its log .*eval_x\.log"):
        with Pool(2, out / "logs", launcher=launcher) as pool:
            pool.spawn("long", lambda job: job.run([*long, "--no-progress"]))
            pool.spawn("eval_x", lambda job: job.run(["eval", "--checkpoint", str(tmp_path / "none.ckpt")]))
            pool.join()
    assert "not found" in (out / "logs" / "eval_x.log").read_text()
    wait_for(lambda: not running(f"experiments_dir={out}"), seconds=60)  # the training was cancelled


def records(out: Path) -> dict[str, dict]:
    # Not the hidden temporary file of a record being written (atomically): it comes and goes.
    paths = [path for path in (out / "launcher").glob("*.json") if not path.name.startswith(".")]
    return {path.stem: json.loads(path.read_text()) for path in paths}


@pytest.mark.slow(seconds=220)  # with the local launcher's study (the fixture) where it is not made yet
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the jobs' processes in /proc")
def test_the_smoke_study_through_submitit_gives_the_local_table_and_a_killed_driver_submits_only_the_rest(
    tmp_path, minigrid_smoke_study
):
    """`duo-ai study minigrid_smoke --launcher slurm launcher.cluster=local`, its driver killed (SIGKILL)
    in the gate while an evaluation runs (held still until the rerun is there), then run again: the
    local launcher's table, the running job re-attached to, every job submitted once."""
    out = tmp_path / "study"
    study = [sys.executable, "-m", "duo_ai_cli", "study", "minigrid_smoke", "--out", str(out), "--jobs", "2"]
    study += SLURM_HERE
    held = None
    with open(tmp_path / "first.out", "w") as first:
        driver = subprocess.Popen(study, stdout=first, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            wait_for(lambda: "eval_always_novice" in records(out), seconds=600)
            time.sleep(0.5)  # the other records of its submission are written (the gate's evaluations run)
            driver.kill()  # as a lost login session would: its jobs go on
            driver.wait()
            controller = int(records(out)["eval_always_novice"]["job_id"])
            held = process_under(controller, b"duo_ai_cli")
            os.kill(held, signal.SIGSTOP)  # still running when the rerun looks
        finally:
            driver.kill()
    before = records(out)
    try:
        with open(tmp_path / "again.out", "w") as again:
            rerun = subprocess.Popen(study, stdout=again, stderr=subprocess.STDOUT, cwd=ROOT)
            try:
                wait_for(lambda: "re-attached eval_always_novice to " in (tmp_path / "again.out").read_text())
            finally:
                os.kill(held, signal.SIGCONT)
            assert rerun.wait(timeout=900) == 0, (tmp_path / "again.out").read_text()[-3000:]
    finally:
        rerun.kill()
    output = (tmp_path / "again.out").read_text()
    assert (out / "table.json").read_text() == (minigrid_smoke_study / "table.json").read_text()
    every = records(out)
    assert {"novice", "expert", "always_novice", "always_expert"} < set(before) < set(every)
    assert {name: r["submissions"] for name, r in every.items() if len(r["submissions"]) != 1} == {}
    for name in before:  # finished, or re-attached to while it ran: never submitted again
        assert f"submitted {name} as" not in output, name
    assert f"reusing {out}/novice" in (out / "logs" / "novice.log").read_text()  # finished before the kill
    folder = out / "launcher" / "submitit"
    for name, record in every.items():  # each a pickled job, its own process's result, its own log
        assert (folder / f"{record['job_id']}_submitted.pkl").is_file(), name
        assert (folder / f"{record['job_id']}_0_result.pkl").is_file(), name
        assert (out / "logs" / f"{name}.log").is_file(), name
