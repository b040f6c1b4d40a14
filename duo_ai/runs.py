"""Run folders that never lose data, resuming a run as what it is, and the record of what ran.

- `RunFolder` checks a run's folder before anything is built or written, and with `overwrite=true`
  moves the old run aside (`<experiments_dir>/.<name>.old-<time>`) instead of deleting it; the old
  copy is deleted once the new run has written its first `last.ckpt`, and put back if the new run
  ends before that. While a run trains, `run.lock` in its folder names its process: a second run
  that would overwrite or resume that folder is refused (its files would mix with the live run's).
- `resume_config` loads a run's config for `--resume` with overrides that extend the run (more
  steps, other log/save/eval frequencies, evaluation settings, compute settings) and refuses those
  that would change what it trains.
- `run_info` is what actually ran: device, precision, threads, world size, versions, git commit.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

import duo_ai
from duo_ai.config import Config, config_to_dict, load_config
from duo_ai.core.compute import Compute
from duo_ai.core.distributed import ProcessContext
from duo_ai.core.errors import ConfigError
from duo_ai.core.files import check_writable

# --- the run folder ------------------------------------------------------------------------------

LOCK = "run.lock"


def live_owner(folder: Path, name: str = LOCK) -> int | None:
    """The pid of a live process on this machine that holds the lock `folder/name`, if any.

    A lock left by a process that died (or by this one) does not count; one written on another
    machine cannot be checked and does not count either.
    """
    try:
        host, pid_text = (folder / name).read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    if host != platform.node() or pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another user's
        pass
    return pid


class RunFolder:
    """`<experiments_dir>/<name>/`, checked on creation (nothing touched), opened by `open()`.

    With `overwrite=true` an existing run is moved aside by `open()`; `commit()` (the new run has
    its first checkpoint) deletes it, `abandon()` (the new run ended before that) puts it back.
    """

    def __init__(self, config: Config, resume: bool) -> None:
        self.root = Path(config.experiments_dir)
        self.path = self.root / config.name
        self.resume = resume
        self.overwrite = config.overwrite
        self.aside: Path | None = None
        check_writable(self.root, "experiments folder")
        if resume:
            if not has_checkpoint(self.path):
                raise ConfigError(f"cannot resume: {self.path} holds no last.ckpt nor checkpoints/step_*.ckpt")
            check_writable(self.path, "run folder")
        elif self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"run folder {self.path} is a file; pass name=<another name>")
        elif self.occupied and not config.overwrite:
            raise ConfigError(
                f"run folder {self.path} already exists; pass overwrite=true to replace it, "
                f"--resume {self.path} to continue it, or name=<new name> for a new run"
            )
        owner = live_owner(self.path)
        if owner is not None:
            raise ConfigError(
                f"run folder {self.path} is in use by process {owner}, which is still training it; stop it "
                f"first (kill -TERM {owner} saves its last.ckpt) or pass name=<new name> (if {owner} is not "
                f"a duo-ai run, delete {self.path / LOCK})"
            )

    @property
    def occupied(self) -> bool:
        """Whether the folder holds a run's files (its lock alone does not count)."""
        return self.path.is_dir() and any(p.name != LOCK for p in self.path.iterdir())

    def open(self, log: Callable[[str], None]) -> Path:
        """Take the folder's lock, then (when overwriting) move the existing run aside; returns the folder.

        The lock is created atomically (O_CREAT | O_EXCL) before anything is written, and the checks
        of `__init__` are made again under it: of two runs started into one name, at the same moment
        or seconds apart, one trains and the other is refused, and neither moves the other aside.
        """
        created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            self.lock()
            if not self.resume and self.occupied:
                if not self.overwrite:
                    raise ConfigError(
                        f"run folder {self.path} was created by another run since this one started; pass "
                        f"name=<new name> (or overwrite=true to replace it)"
                    )
                self.move_aside(log)
        except BaseException:
            self.release()
            if created and not any(self.path.iterdir()):
                self.path.rmdir()
            raise
        remove_stale_temporaries(self.path)
        return self.path

    def lock(self) -> None:
        """Create `run.lock` naming this process, atomically; a lock of a process that has died is taken over."""
        take_lock(
            self.path / LOCK,
            lambda who: (
                f"run folder {self.path} is in use by {who}, which is still training it; pass "
                f"name=<new name> (if no duo-ai run uses it, delete {self.path / LOCK})"
            ),
            unknown="another run",
        )

    def move_aside(self, log: Callable[[str], None]) -> None:
        """`overwrite=true`: rename the old run (and the lock just taken) aside, and lock a new, empty folder."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = self.root / f".{self.path.name}.old-{stamp}"
        if aside.exists():
            aside = self.root / f".{self.path.name}.old-{stamp}-{os.getpid()}"
        os.rename(self.path, aside)
        self.aside = aside
        (aside / LOCK).unlink(missing_ok=True)
        try:
            self.path.mkdir()  # fails if another run made the folder since the rename
            self.lock()
        except (FileExistsError, ConfigError):
            self.aside = None  # the folder is the other run's now: never delete it to put this one back
            raise ConfigError(
                f"run folder {self.path} was created by another run while this one moved the previous run aside "
                f"(kept in {aside}); pass name=<new name>"
            ) from None
        log(f"overwrite: moved the previous run to {aside}; it is deleted once this run saves last.ckpt")

    def release(self) -> None:
        """The run has ended: its folder is free (the lock goes if it is still this process's)."""
        release_lock(self.path / LOCK)

    def commit(self) -> None:
        """The new run has written last.ckpt: the run it replaces can go."""
        if self.aside is not None:
            shutil.rmtree(self.aside, ignore_errors=True)
            self.aside = None

    def abandon(self) -> str | None:
        """The new run ended before its first checkpoint: put the replaced run back. Returns a note."""
        if self.aside is None:
            return None
        aside, self.aside = self.aside, None
        try:
            shutil.rmtree(self.path)
            os.rename(aside, self.path)
        except OSError as e:
            return f"the new run ended before its first checkpoint; the previous run is kept in {aside} ({e})"
        return f"the new run ended before its first checkpoint; restored the previous run in {self.path}"


def take_lock(lock: Path, busy: Callable[[str], str], unknown: str = "another process") -> None:
    """Create the file `lock` naming this process, atomically (O_CREAT | O_EXCL); a lock left by a
    process that has died is taken over. A live owner's is a `ConfigError` of `busy(who)`."""
    for attempt in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = live_owner(lock.parent, lock.name)
            if owner is not None or attempt or _empty(lock):  # empty: its owner writes it now
                raise ConfigError(busy(f"process {owner}" if owner is not None else unknown)) from None
            lock.unlink(missing_ok=True)  # left by a process that died
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{platform.node()} {os.getpid()}\n")
        return


def release_lock(lock: Path) -> None:
    """Remove `lock` if it is still this process's."""
    try:
        if lock.read_text().split()[1] == str(os.getpid()):
            lock.unlink()
    except (OSError, IndexError):
        pass


def _empty(path: Path) -> bool:
    try:
        return not path.read_text().strip()
    except OSError:
        return False


def remove_stale_temporaries(run_dir: Path) -> None:
    """Delete the temporary files of atomic writes that a killed process left (`.<name>.<random>.tmp*`);
    called under the run's lock, when no other process writes there."""
    for folder in (run_dir, run_dir / "checkpoints"):
        for tmp in folder.glob(".*.tmp*") if folder.is_dir() else ():
            tmp.unlink(missing_ok=True)


def has_checkpoint(run_dir: Path) -> bool:
    """Whether a run folder holds something to resume from (last.ckpt, or a rolling checkpoint)."""
    return (run_dir / "last.ckpt").is_file() or any((run_dir / "checkpoints").glob("step_*.ckpt"))


# --- resuming ------------------------------------------------------------------------------------

# Keys that change how a run computes, logs and evaluates itself, not what it learns (a trailing
# dot: the whole section).
HOW_IT_RUNS = (
    "algorithm.log_freq",
    "algorithm.save_freq",
    "algorithm.eval_freq",
    "evaluation.",
    "device",
    "precision",
    "num_threads",
    "channels_last",
    "compile",
    "cache_host_memory",
    "env.num_threads",
    "distributed_timeout_s",
)
# Keys `--resume` may change: they extend the run or change how it runs; every other key would
# change what was trained.
RESUMABLE = ("algorithm.total_timesteps", *HOW_IT_RUNS)


def resume_config(run_dir: str | os.PathLike, overrides: list[str]) -> tuple[Config, list[str]]:
    """The config to continue the run in `run_dir` with, and one `resume: key old -> new` line per change."""
    run_dir = Path(run_dir)
    if run_dir.is_file():
        raise ConfigError(f"--resume takes a run folder, not a file; did you mean --resume {run_dir.parent}?")
    if not (run_dir / "config.yaml").is_file() or not has_checkpoint(run_dir):
        raise ConfigError(
            f"cannot resume: {run_dir} has no config.yaml or no checkpoint; pass a run folder written by duo-ai train"
        )
    if run_dir.name in ("", ".", ".."):
        run_dir = run_dir.resolve()
    stored = load_config(run_dir / "config.yaml")
    config = load_config(run_dir / "config.yaml", overrides)
    before, after = flatten(config_to_dict(stored)), flatten(config_to_dict(config))
    changes = [(key, before.get(key), after.get(key)) for key in after.keys() | before.keys()]
    changes = sorted((key, old, new) for key, old, new in changes if old != new)
    for key, old, new in changes:
        _check_resumable(run_dir, key, old, new)
    config.experiments_dir, config.name = str(run_dir.parent), run_dir.name
    return config, [f"resume: {key} {old} -> {new}" for key, old, new in changes if _resumable(key)]


# What a checkpoint's state is laid out for: resuming it under another game, env or model fails deep
# inside the game or the optimizer, so these are compared with the run's config.yaml first.
SAME_ON_RESUME = ("env.", "policy.", "algorithm.name")


def check_checkpoint_config(path: Path, saved: dict[str, Any], config: Config, learned: tuple[str, ...] = ()) -> None:
    """Refuse to resume from a checkpoint whose own config differs from the run's in what it trained.
    `learned`: keys the run itself changes as it goes (the value a calibration is trying)."""
    before, now = flatten(saved), flatten(config_to_dict(config))
    for key in sorted(before.keys() & now.keys() - set(learned)):
        if key.startswith(SAME_ON_RESUME) and not _resumable(key) and before[key] != now[key]:
            raise ConfigError(
                f"cannot resume from {path}: it was trained with {key}={before[key]}, but the run's config.yaml "
                f"has {key}={now[key]} (a checkpoint copied from another run?); put the run's own checkpoint back "
                "or start a new run"
            )


def _resumable(key: str) -> bool:
    return is_among(key, RESUMABLE)


def is_among(key: str, keys: tuple[str, ...]) -> bool:
    """Whether dotted `key` is one of `keys` or inside one of their sections (`evaluation.`)."""
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in keys)


def _check_resumable(run_dir: Path, key: str, old: Any, new: Any) -> None:
    """Refuse a change `--resume` cannot make; the run's own folder as name/experiments_dir is fine."""
    if key == "name" and new == run_dir.name:
        return
    if key == "experiments_dir" and Path(new).resolve() == run_dir.parent.resolve():
        return
    if key == "overwrite":
        raise ConfigError("overwrite has no effect with --resume, which continues the run in place; drop it")
    if key in ("name", "experiments_dir"):
        raise ConfigError(
            f"--resume continues the run in {run_dir}, so {key} cannot change ({old} -> {new}); "
            f"for a new run from its config use -c {run_dir / 'config.yaml'} {key}={new}"
        )
    if not _resumable(key):
        raise ConfigError(
            f"--resume cannot change {key} ({old} -> {new}): the run was trained with {key}={old}; "
            f"for a new run from its config use -c {run_dir / 'config.yaml'} {key}={new} name=<new name>"
        )


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# --- what ran ------------------------------------------------------------------------------------

DISTRIBUTIONS = {"torch": ("torch",), "gymnasium": ("gymnasium",), "procgen": ("procgen-mirror", "procgen")}


def run_info(compute: Compute, ctx: ProcessContext, resumed: bool = False) -> dict[str, Any]:
    """What this process actually runs with: resolved compute, world size, versions, git commit."""
    info: dict[str, Any] = {
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "resumed": resumed,
        "device": str(compute.device),
        "precision": compute.precision,
        "num_threads": torch.get_num_threads(),
        # The GPUs this process was given (a study's job gets one; None: not set).
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "channels_last": compute.channels_last,
        "compile": compute.compile,
        "world_size": ctx.world_size,
        "host": platform.node(),
        "python": platform.python_version(),
        "versions": {"duo-ai": duo_ai.__version__, **{name: _version(*dists) for name, dists in DISTRIBUTIONS.items()}},
    }
    if compute.device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(compute.device)
    info.update(git_state())
    return info


def _version(*distributions: str) -> str | None:
    for name in distributions:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def git_state() -> dict[str, Any]:
    """`git_commit` (and `git_dirty`) of the checkout duo_ai runs from; empty when it is not one."""
    package = Path(duo_ai.__file__).resolve().parent
    try:
        top = _git(package, "rev-parse", "--show-toplevel")
        if Path(top).resolve() / "duo_ai" != package:  # an installed copy inside some other repository
            return {}
        commit = _git(package, "rev-parse", "HEAD")
        dirty = bool(_git(package, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git_commit": commit, "git_dirty": dirty}


def _git(folder: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(folder), *args],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return done.stdout.strip()
