"""Hostile inputs a run or a file system must survive: each is refused in one line with exit code 2,
no traceback, before any work, and nothing in the scratch folder is created, changed or removed.

The scratch folder (`root`, the working directory) holds `R`, a copy of the test run's finished
tiny run, and whatever special file a case makes (a named pipe, a device node of its own, a
dangling link; never anything under /dev).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from duo_ai.config import load_config
from duo_ai.core.checkpoint import load_checkpoint, save_checkpoint
from duo_ai.core.errors import CheckpointError, ConfigError
from duo_ai.runs import LOCK, RunFolder
from tests.conftest import TINY, assert_user_error, cli


@pytest.fixture
def root(tiny_run, tmp_path, monkeypatch) -> Path:
    shutil.copytree(tiny_run, tmp_path / "R")
    (tmp_path / "evals").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under `root` (links not followed) with its kind, size and modification time."""
    found = {}
    for path in sorted(root.rglob("*")):
        st = os.lstat(path)
        found[str(path.relative_to(root))] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns)
    return found


def refused(root: Path, args: list[str], *fragments: str) -> None:
    """`duo-ai ARGS` exits 2 with one `error:` line holding `fragments`, and nothing under `root` changes."""
    before = snapshot(root)
    result = cli(*args)
    assert_user_error(result, *fragments)
    assert snapshot(root) == before


# -- the output-path rule, for every command that writes a file --------------------------------------
# Each command with `{out}` where its output path goes; all are checked before any work starts.
WRITERS = {
    "eval --json": ["eval", "--checkpoint", "R", "-n", "1", "--json", "{out}"],
    "bench --json": ["bench", "--num-envs", "2", "--num-steps", "8", "--iterations", "1", "--json", "{out}"],
    "compare --json": ["compare", "R", "--json", "{out}"],
    "plot -o": ["plot", "R", "-o", "{out}"],
    "video -o": ["video", "--checkpoint", "R", "-o", "{out}"],
    "export -o": ["export", "R", "-o", "{out}"],
    "ask-map -o": ["ask-map", "--checkpoint", "R", "-o", "{out}"],
}
SUFFIX = {"plot -o": ".png", "video -o": ".gif", "export -o": ".ckpt", "ask-map -o": ".png"}


def _writer(name: str, out: str) -> list[str]:
    return [a.format(out=out) for a in WRITERS[name]]


def _fifo(root: Path, name: str) -> str:
    os.mkfifo(root / name)
    return name


def _device(root: Path, name: str) -> str:
    try:  # a character device of our own (the numbers of /dev/null), made in the scratch folder
        os.mknod(root / name, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device node needs CAP_MKNOD")
    return name


def _dangling(root: Path, name: str) -> str:
    (root / name).symlink_to(root / "nowhere" / "target")
    return name


def _folder(root: Path, name: str) -> str:
    (root / name).mkdir()
    return name


SPECIAL = {
    "a named pipe": (_fifo, "is a named pipe"),
    "a device node": (_device, "is a device"),
    "a dangling link": (_dangling, "is a symbolic link"),
}


@pytest.mark.parametrize("kind", list(SPECIAL))
@pytest.mark.parametrize("writer", list(WRITERS))
def test_an_output_that_is_not_a_regular_file_is_never_replaced(root, writer, kind):
    make, fragment = SPECIAL[kind]
    out = make(root, "out" + SUFFIX.get(writer, ".json"))
    refused(root, _writer(writer, out), out, fragment, "never replaces")


@pytest.mark.parametrize("writer", list(WRITERS))
def test_an_output_in_a_missing_folder_is_refused_and_no_folder_is_made(root, writer):
    out = "missing/deeper/out" + SUFFIX.get(writer, ".json")
    refused(root, _writer(writer, out), "the folder missing/deeper does not exist", "mkdir -p missing/deeper")
    assert not (root / "missing").exists()


@pytest.mark.parametrize("writer", list(WRITERS))
def test_an_output_under_proc_is_refused_before_any_work(root, writer):
    if not Path("/proc/self").is_dir():
        pytest.skip("no /proc here")
    refused(root, _writer(writer, "/proc/probe" + SUFFIX.get(writer, ".json")), "/proc/probe", "cannot be written")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["eval", "--checkpoint", "R", "-n", "1", "--json", "R/config.yaml"], "a file of the run folder"),
        (["eval", "--checkpoint", "R/last.ckpt", "-n", "1", "--json", "R/last.ckpt"], "is a checkpoint"),
        (["eval", "--checkpoint", "X.ckpt", "-n", "1", "--json", "X.ckpt"], "is a checkpoint"),
        (["eval", "--checkpoint", "R", "-n", "1", "--json", "R/checkpoints/new.json"], "a file of the run folder"),
        (["compare", "R", "--json", "R/summary.json"], "a file of the run folder"),
        (["plot", "R", "-o", "R/best_test.ckpt"], "R/best_test.ckpt"),
    ],
)
def test_an_output_never_replaces_a_checkpoint_or_a_file_its_run_owns(root, args, fragment):
    shutil.copy(root / "R" / "last.ckpt", root / "X.ckpt")
    (root / "R" / "checkpoints").mkdir(exist_ok=True)
    refused(root, args, fragment)


def test_ask_map_checks_its_json_beside_the_png(root):
    os.mkfifo(root / "map.json")
    refused(root, ["ask-map", "--checkpoint", "R", "-o", "map.png"], "map.json is a named pipe")


def test_study_report_output_folder_follows_the_rule(root):
    refused(root, ["study-report", "evals", "-w", "0", "-o", "missing/report"], "the folder missing does not exist")
    (root / "report").mkdir()
    os.mkfifo(root / "report" / "table.json")
    refused(root, ["study-report", "evals", "-w", "0", "-o", "report"], "report/table.json is a named pipe")
    refused(root, ["study-report", "evals", "-w", "0", "-o", "/proc/report"], "/proc/report cannot be created")


# -- a full disk ---------------------------------------------------------------------------------------
@pytest.fixture
def full_disk(tmp_path) -> Path:
    """A tiny tmpfs filled to the last byte (root only; skipped elsewhere)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        with open(disk / "filler", "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=False)


@pytest.mark.parametrize("writer", ["eval --json", "compare --json", "plot -o", "export -o"])
def test_a_full_disk_is_one_line_and_leaves_no_partial_file(root, full_disk, writer):
    out = full_disk / ("out" + SUFFIX.get(writer, ".json"))
    result = cli(*_writer(writer, str(out)))
    assert_user_error(result, f"could not write {out}", "No space left on device")
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]


def test_a_full_disk_during_training_is_one_line_and_keeps_nothing_half_written(tiny_run, full_disk, monkeypatch):
    monkeypatch.chdir(full_disk.parent)
    (full_disk / "filler").write_bytes(b"\0" * (150 * 1024))  # room for the folder and logs, not a checkpoint
    result = cli("train", *TINY, f"experiments_dir={full_disk}", "name=full", "--no-progress")
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert len(lines) == 1 and "No space left on device" in lines[0], result.stderr
    assert not list((full_disk / "full").rglob("*.tmp"))


# -- numbers -------------------------------------------------------------------------------------------
VIDEO = ["video", "--checkpoint", "R", "-o", "v.gif"]
NUMBERS = [
    ([*VIDEO, "--fps", "nan"], ["--fps=nan", "finite number in [0.1, 240]"]),
    ([*VIDEO, "--fps", "inf"], ["--fps=inf"]),
    ([*VIDEO, "--fps", "1e-9"], ["--fps=1e-09", "[0.1, 240]"]),
    ([*VIDEO, "--fps", "0"], ["--fps=0.0"]),
    ([*VIDEO, "-t", "nan"], ["--temperature=nan", "finite"]),
    ([*VIDEO, "--seed", "-1"], ["--seed=-1", "[0, 2**31-1]"]),
    ([*VIDEO, "--split", ""], ["--split=''", "a split name"]),
    ([*VIDEO, "--scale", "0"], ["--scale=0", "[1, 16]"]),
    ([*VIDEO, "-n", "100000"], ["--episodes=100000", "[1, 1000]"]),
    (["eval", "--checkpoint", "R", "-n", "1000000000000"], ["--episodes=1000000000000", "[1, 1000000]"]),
    (["eval", "--checkpoint", "R", "--split", ""], ["--split=''", "a split name"]),
    (["eval", "--checkpoint", "R", "--split", " "], ["--split=' '"]),
    (["eval", "--checkpoint", "R", "evaluation.num_episodes=10000000"], ["evaluation.num_episodes=10000000"]),
    (["bench", "--num-minibatches", "0"], ["--num-minibatches=0", ">= 1"]),
    (["bench", "--num-envs", "-1"], ["--num-envs=-1", ">= 1"]),
    (["bench", "--iterations", "0"], ["--iterations=0"]),
    (["bench", "--warmup", "-1"], ["--warmup=-1"]),
    (["study-report", "evals", "-w", "nan", "-o", "out"], ["--weight=nan", "finite"]),
    (["study-report", "evals", "-w", "-1", "-o", "out"], ["--weight=-1.0", "[0, 1000000]"]),
]


@pytest.mark.parametrize("args, fragments", NUMBERS, ids=[" ".join(a[3:]) for a, _ in NUMBERS])
def test_every_numeric_option_is_finite_and_in_range(root, args, fragments):
    refused(root, args, *fragments)


# -- checkpoints ---------------------------------------------------------------------------------------
def _flip_tensor_bytes(path: Path, count: int = 600) -> None:
    """Flip `count` bytes inside the largest weight's data, leaving the archive's structure intact."""
    weights = torch.load(path, weights_only=True)["model_state_dict"]
    largest = max(weights.values(), key=lambda t: t.numel()).contiguous()
    data = bytearray(path.read_bytes())
    start = data.find(largest.reshape(-1).view(torch.uint8).numpy().tobytes()[:256])
    assert start > 0
    for i in range(start + 64, start + 64 + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_flipped_bytes_in_the_weights_are_refused_by_the_checksum(root):
    ckpt = root / "R" / "best_test.ckpt"
    _flip_tensor_bytes(ckpt)
    refused(root, ["eval", "--checkpoint", ckpt, "-n", "1"], "is corrupt", "do not match the checksum")


def test_a_damaged_header_is_called_corrupt_not_pickled_objects(root):
    ckpt = root / "R" / "best_test.ckpt"
    data = bytearray(ckpt.read_bytes())
    at = data.find(b"data.pkl") + 40
    data[at : at + 40] = bytes(b ^ 0x5A for b in data[at : at + 40])
    ckpt.write_bytes(bytes(data))
    refused(root, ["eval", "--checkpoint", ckpt, "-n", "1"], "is corrupt")
    assert "pickled" not in cli("eval", "--checkpoint", ckpt).stderr


def test_a_checkpoint_without_a_checksum_loads_with_one_line_saying_so(root):
    old = root / "old.ckpt"
    payload = load_checkpoint(root / "R" / "last.ckpt")  # the digest is checked and dropped
    torch.save(payload, old)  # as an older duo-ai wrote it: no digest
    result = cli("eval", "--checkpoint", old, "-n", "1")
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if "unverified" in line]
    assert len(notes) == 1 and "old.ckpt has no checksum" in notes[0], result.stderr
    assert "sha256" in torch.load(root / "R" / "last.ckpt", weights_only=True)


def test_nan_weights_and_missing_weights_are_refused(root):
    payload = load_checkpoint(root / "R" / "last.ckpt")
    name = next(iter(payload["model_state_dict"]))
    payload["model_state_dict"][name] = payload["model_state_dict"][name].clone().fill_(float("nan"))
    save_checkpoint(root / "nan.ckpt", payload)
    save_checkpoint(root / "empty.ckpt", {"config": payload["config"]})
    refused(root, ["eval", "--checkpoint", "nan.ckpt"], "not finite", name)
    refused(root, ["video", "--checkpoint", "nan.ckpt", "-o", "v.gif"], "not finite")
    refused(root, ["eval", "--checkpoint", "empty.ckpt"], "holds no model weights")


def test_resume_refuses_a_checkpoint_of_another_game_or_an_exported_one(root):
    payload = load_checkpoint(root / "R" / "last.ckpt")
    payload["config"]["env"]["task"] = "bigfish"
    save_checkpoint(root / "R" / "last.ckpt", payload)
    refused(root, ["train", "--resume", "R", "--no-progress"], "trained with env.task=bigfish", "config.yaml")
    assert cli("export", root / "R" / "best_test.ckpt", "-o", "small.ckpt").exit_code == 0
    shutil.copyfile(root / "small.ckpt", root / "R" / "last.ckpt")
    shutil.rmtree(root / "R" / "checkpoints")
    refused(root, ["train", "--resume", "R", "--no-progress"], "was exported")


# -- the run folder: one run per name --------------------------------------------------------------
@pytest.fixture
def other_process():
    """A live process that is not this one, to own a run.lock as another training run would."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    proc.kill()
    proc.wait()


def _config(root: Path, *extra: str):
    return load_config(overrides=[*TINY, f"experiments_dir={root}", "name=dup", *extra])


def test_a_run_started_into_a_folder_another_live_run_has_just_locked_is_refused(root, other_process):
    first, second = RunFolder(_config(root), False), RunFolder(_config(root, "overwrite=true"), False)
    first.open(lambda message: None)  # both checked the name while it was free; the first locks it
    (root / "dup" / LOCK).write_text(f"{os.uname().nodename} {other_process.pid}\n")
    (root / "dup" / "train.log").write_text("the first run's log\n")
    before = snapshot(root)
    with pytest.raises(ConfigError, match=f"in use by process {other_process.pid}"):
        second.open(lambda message: None)
    assert snapshot(root) == before and not list(root.glob(".dup.old-*"))


def test_a_run_that_finished_since_the_check_is_not_overwritten_without_overwrite(root):
    first, second = RunFolder(_config(root), False), RunFolder(_config(root), False)
    first.open(lambda message: None)
    (root / "dup" / "train.log").write_text("the first run's log\n")
    first.release()
    files = lambda: {k: v for k, v in snapshot(root).items() if not stat.S_ISDIR(v[0])}  # noqa: E731
    before = files()
    with pytest.raises(ConfigError, match="created by another run since this one started"):
        second.open(lambda message: None)
    assert files() == before  # (the folder's own time changes: the lock was taken and given back)


def test_the_lock_is_an_atomic_create(root):
    folder = RunFolder(_config(root), False)
    folder.open(lambda message: None)
    with pytest.raises(FileExistsError):  # what a second process's O_EXCL create meets
        os.open(root / "dup" / LOCK, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    folder.release()
    assert not (root / "dup" / LOCK).exists()


@pytest.mark.slow
def test_two_trains_into_one_name_at_the_same_moment_one_is_refused(tmp_path):
    train = [sys.executable, "-m", "duo_ai_cli", "train", *TINY, "name=dup", "--no-progress"]
    procs = [subprocess.Popen(train, cwd=tmp_path, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    done = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in done)
    assert codes == [0, 2], done
    errors = [line for _, err in done for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "dup" in errors[0], done
    assert not list((tmp_path / "experiments").glob(".dup.old-*"))


def test_a_stale_temporary_file_of_a_killed_save_is_removed_when_the_run_is_opened(root):
    stale = [root / "R" / "checkpoints" / ".step_000000000999.ckpt.x1y2.tmp", root / "R" / ".summary.json.ab.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    config = load_config(root / "R" / "config.yaml", [f"experiments_dir={root}", "name=R"])
    folder = RunFolder(config, resume=True)
    folder.open(lambda message: None)
    folder.release()
    assert not any(path.exists() for path in stale)
    assert (root / "R" / "last.ckpt").is_file()


# -- training that goes non-finite ---------------------------------------------------------------------
def test_a_run_that_diverges_stops_and_keeps_its_last_finite_checkpoint(root):
    # The step size the run goes on with: the config's (annealed from it) and the optimizer's own.
    config = root / "R" / "config.yaml"
    config.write_text(config.read_text().replace("learning_rate: 0.0005", "learning_rate: 1.0e+30"))
    assert "1.0e+30" in config.read_text()
    state = load_checkpoint(root / "R" / "last.ckpt")
    for group in state["optim_state_dict"]["param_groups"]:
        group["lr"] = 1e30
    save_checkpoint(root / "R" / "last.ckpt", state)
    kept = {p.name: p.read_bytes() for p in (root / "R").glob("*.ckpt")}
    result = cli("train", "--resume", "R", "algorithm.total_timesteps=768", "--no-progress")
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert len(errors) == 1 and "training diverged at iteration" in " ".join(result.stderr.split()), result.stderr
    assert {p.name: p.read_bytes() for p in (root / "R").glob("*.ckpt")} == kept  # no NaN best_*.ckpt
    assert load_checkpoint(root / "R" / "last.ckpt")["global_step"] == 256


def test_a_new_run_that_diverges_at_once_saves_nothing(root):
    result = cli("train", *TINY, "experiments_dir=exp", "name=nan", "algorithm.learning_rate=1e30", "--no-progress")
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and len(errors) == 1, result.stderr
    assert "nothing was saved" in " ".join(result.stderr.split())
    assert not list((root / "exp" / "nan").rglob("*.ckpt"))


# -- config files and train overrides ------------------------------------------------------------------
BOMB = "\n".join(
    [
        'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
        *(f"{x}: &{x} [{', '.join([f'*{p}'] * 9)}]" for p, x in zip("abcdef", "bcdefg", strict=True)),
    ]
)
YAMLS = [
    (BOMB, ["expands to more than 100,000 values"]),
    ("x: " + "[" * 5000 + "]" * 5000, ["nests deeper than 32 levels"]),
    ("x: " + "[" * 40 + "]" * 40, ["nests deeper than 32 levels"]),
    ("name: a\nseed: 1\nname: b\n", ["key 'name' appears twice (lines 1 and 3)"]),
    ("algorithm:\n  learning_rate: 1e-3\n  learning_rate: 2e-3\n", ["key 'learning_rate' appears twice"]),
]


@pytest.mark.parametrize("text, fragments", YAMLS, ids=["billion laughs", "deep", "deeper than 32", "dup", "dup2"])
def test_a_hostile_config_file_is_one_line(root, text, fragments):
    (root / "hostile.yaml").write_text(text)
    refused(root, ["train", "-c", "hostile.yaml", "--no-progress"], *fragments)


TRAIN = [*TINY, "experiments_dir=exp", "--no-progress"]
OVERRIDES = [
    (["name=a\nb"], ["holds a control character"]),
    (["name=a\tb"], ["holds a control character"]),
    (["env.start_level=2147483647", "env.num_levels=10"], ["run past level 2**31-1"]),
    (["env.splits.test.start_level=2147483640", "env.splits.test.num_levels=100"], ["env.splits.test", "2**31-1"]),
    (["env.num_envs=100000"], ["env.num_envs=100000", "GiB", "lower env.num_envs"]),
]


@pytest.mark.parametrize("overrides, fragments", OVERRIDES, ids=lambda v: repr(v)[:40])
def test_train_overrides_that_cannot_run_are_one_line_before_any_folder(root, overrides, fragments):
    refused(root, ["train", *TRAIN, *overrides], *fragments)
    assert not (root / "exp").exists()


# -- the same run twice, damaged run files ---------------------------------------------------------
@pytest.mark.parametrize("command", [["compare"], ["plot", "-o", "p.png"]])
@pytest.mark.parametrize("second", ["R", "./R", "R/"])
def test_one_run_folder_given_twice_is_refused(root, command, second):
    refused(root, [command[0], "R", second, *command[1:]], "is given twice", "pass each run once")


DAMAGE = [
    ("progress.csv", b"\xff\xfe\x00garbage\x80\x81", ["plot", "R", "-o", "p.png"], "progress.csv is damaged"),
    ("progress.csv", None, ["plot", "R", "-o", "p.png"], "progress.csv is damaged"),
    ("summary.json", b'{"eval": {"test": ', ["compare", "R"], "summary.json is damaged"),
    ("summary.json", b"[1, 2, 3]", ["compare", "R"], "summary.json is damaged"),
    ("config.yaml", b"- a list\n- not a config\n", ["compare", "R"], "config.yaml is not a duo-ai config"),
]


@pytest.mark.parametrize("name, data, args, fragment", DAMAGE, ids=[f"{d[0]}-{i}" for i, d in enumerate(DAMAGE)])
def test_damaged_run_files_are_one_line(root, name, data, args, fragment):
    path = root / "R" / name
    if data is None:  # a non-numeric cell in an otherwise good CSV
        lines = path.read_text().splitlines()
        cells = lines[1].split(",")
        cells[1] = "many"
        data = "\n".join([lines[0], ",".join(cells), *lines[2:]]).encode() + b"\n"
    path.write_bytes(data)
    refused(root, args, fragment)


# -- options that would be ignored -------------------------------------------------------------------
def test_coordination_settings_for_a_base_agent_are_refused_not_ignored(root):
    refused(root, ["eval", "--checkpoint", "R", "--cost-weight", "0.5"], "base agent", "--cost-weight")
    refused(root, ["eval", "--checkpoint", "R", "coordination.base_penalty=1"], "coordination.base_penalty")


def test_an_agent_override_of_a_coordinator_that_carries_its_agents_is_applied(tmp_path_factory, tmp_path):
    from tests.coord_fixtures import agent_checkpoints, always_coordinators

    coordinator = always_coordinators(tmp_path_factory)["expert"]
    other_game = agent_checkpoints(tmp_path_factory)["other_game"]
    # Applied, not ignored: the other game's expert is read, and refused for what it is.
    result = cli("eval", "--checkpoint", coordinator, "-n", "1", f"train_expert={other_game}")
    assert_user_error(result, "train_expert on procgen/bigfish")


def test_a_coordinator_refuses_a_train_agent_it_was_not_trained_with(tmp_path_factory, tmp_path):
    from tests.coord_fixtures import agent_checkpoints, always_coordinators

    coordinator = always_coordinators(tmp_path_factory)["novice"]
    agents = agent_checkpoints(tmp_path_factory)
    copy = tmp_path / "same_novice.ckpt"  # the same agent at another path is fine
    shutil.copy(agents["novice"], copy)
    assert cli("eval", "--checkpoint", coordinator, "-n", "1", f"train_novice={copy}").exit_code == 0
    result = cli("eval", "--checkpoint", coordinator, "-n", "1", f"train_novice={agents['expert']}")
    assert_user_error(result, f"train_novice={agents['expert']} is not the train_novice this coordinator was trained")
    # Another test-time pair is how a coordinator is evaluated elsewhere: allowed.
    assert cli("eval", "--checkpoint", coordinator, "-n", "1", f"test_novice={agents['expert']}").exit_code == 0


def test_bench_of_an_unknown_game_prints_only_the_error(root):
    refused(root, ["bench", "--game", "nosuch"], "unknown Procgen game 'nosuch'")


def test_exit_codes_are_documented():
    text = (Path(__file__).resolve().parents[1] / "docs" / "errors.md").read_text()
    for code in ("`0`", "`1`", "`2`", "`130`", "`143`"):
        assert code in text
    assert "parent folder must exist" in text


def test_the_checksum_covers_every_value(tmp_path):
    payload = {"model_state_dict": {"w": torch.ones(3)}, "global_step": 7, "config": {"a": [1, 2.5]}}
    save_checkpoint(tmp_path / "a.ckpt", payload)
    stored = torch.load(tmp_path / "a.ckpt", weights_only=True)
    stored["global_step"] = 8  # a changed number, saved with the old digest
    torch.save(stored, tmp_path / "a.ckpt")
    with pytest.raises(CheckpointError, match="do not match the checksum"):
        load_checkpoint(tmp_path / "a.ckpt")


def test_a_master_port_that_is_not_a_port_is_named_not_a_timeout(root, monkeypatch):
    for name, value in {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "notaport"}.items():
        monkeypatch.setenv(name, value)
    refused(root, ["train", *TRAIN], "MASTER_PORT='notaport' is not a port number")


def test_a_lock_being_written_counts_as_taken(root):
    (root / "dup").mkdir()
    (root / "dup" / LOCK).write_text("")  # created (O_EXCL) by another run that has not written its pid yet
    with pytest.raises(ConfigError, match="in use by another run"):
        RunFolder(_config(root), False).open(lambda message: None)
    assert (root / "dup" / LOCK).read_text() == ""


# -- no code runs from a config, a checkpoint or the current folder -----------------------------------
# A module that leaves a marker file when imported: found in the current folder, it must never run.
MARKER_MODULE = "from pathlib import Path\nPath('{name}.ran').write_text('ran')\n"


@pytest.fixture
def planted(tmp_path, monkeypatch) -> Path:
    """An empty working folder holding evilmod.py and yaml.py, both leaving a marker when imported."""
    for name in ("evilmod", "yaml"):
        (tmp_path / f"{name}.py").write_text(MARKER_MODULE.format(name=name))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # as `python -m` would put it: importable if ever imported
    return tmp_path


def test_an_env_id_naming_a_module_is_refused_and_imports_nothing(planted):
    result = cli("train", "-c", "cartpole", "env.task=evilmod:CartPole-v1", f"experiments_dir={planted}")
    assert_user_error(result, "evilmod:CartPole-v1", "may not name a module")
    result = cli("train", "-c", "cartpole", "env.task=this:CartPole-v1", f"experiments_dir={planted}")
    assert_user_error(result, "this:CartPole-v1")
    assert not (planted / "evilmod.ran").exists()
    assert not list(planted.glob("*/last.ckpt"))


def test_a_checkpoint_whose_env_id_names_a_module_is_refused_and_imports_nothing(planted, tiny_run):
    payload = load_checkpoint(tiny_run / "last.ckpt")
    payload["config"]["env"].update(name="gym", task="evilmod:CartPole-v1", distribution_mode="easy", num_threads=0)
    save_checkpoint(planted / "edited.ckpt", payload)  # a valid digest: the file is as its writer meant it
    for command in (
        ["eval", "--checkpoint", "edited.ckpt", "-n", "1"],
        ["video", "--checkpoint", "edited.ckpt", "-o", "v.mp4"],
    ):
        assert_user_error(cli(*command), "evilmod:CartPole-v1")
    assert not (planted / "evilmod.ran").exists()


def test_study_jobs_do_not_import_modules_from_the_current_folder(planted, monkeypatch):
    from duo_ai.study.jobs import Pool

    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    with Pool(1, planted / "logs") as pool:
        pool.now("configs", lambda out: out.run(["configs"], quiet=True))  # reads YAML: imports yaml
    assert not (planted / "yaml.ran").exists()


@pytest.mark.parametrize(
    ("module", "fragment"),
    [
        ("evilmod.py", "without .py (--import evilmod)"),
        ("", "is not a module name"),
        ("../evilmod", "is not a module name"),
        ("evil mod", "is not a module name"),
    ],
)
def test_an_import_that_is_not_a_module_name_is_refused_before_importing(planted, module, fragment):
    assert_user_error(cli("train", "--import", module), fragment)
    assert not (planted / "evilmod.ran").exists()


@pytest.mark.parametrize(
    ("source", "fragments"),
    [
        ("raise RuntimeError('boom')\n", ["--import brokenmod", "RuntimeError: boom"]),
        ("import no_such_dependency_xyz\n", ["--import brokenmod", "No module named 'no_such_dependency_xyz'"]),
        (
            "from duo_ai.core.registry import MODELS\n@MODELS.register('mlp_ppo')\nclass Twice: pass\n",
            ["--import brokenmod", "registered twice"],
        ),
    ],
)
def test_a_module_that_fails_to_import_is_one_line_naming_it(planted, source, fragments):
    (planted / "brokenmod.py").write_text(source)
    result = cli("train", "--import", "brokenmod", "-c", "cartpole", f"experiments_dir={planted}")
    assert_user_error(result, *fragments)
    assert not list(planted.glob("*/last.ckpt"))


def test_a_broken_entry_point_warns_and_never_stops_version_help_or_configs(monkeypatch):
    from importlib.metadata import EntryPoint

    import duo_ai.plugins

    broken = EntryPoint("broken", "no_such_plugin_xyz", duo_ai.plugins.ENTRY_POINT_GROUP)
    monkeypatch.setattr(duo_ai.plugins, "entry_points", lambda group: [broken])
    for args in (["--version"], ["--help"], ["configs"]):
        result = cli(*args)
        assert result.exit_code == 0, (args, result.output)
        assert "Traceback" not in result.output
    result = cli("configs")
    assert "warning: plugin broken (no_such_plugin_xyz)" in result.stderr
    assert "ModuleNotFoundError" in result.stderr


def test_a_new_file_made_by_another_writer_meanwhile_is_never_replaced(tmp_path):
    """Two `export -o X` at once: the one that finishes second is refused, the first one's file stays."""
    from duo_ai.core.files import atomic_write

    target = tmp_path / "x.ckpt"

    def slow_write(f):
        target.write_bytes(b"the other export")  # another process finishes first
        f.write(b"this export")

    with pytest.raises(ConfigError, match="appeared while it was being written"):
        atomic_write(target, slow_write, new=True)
    assert target.read_bytes() == b"the other export"
    assert [p.name for p in tmp_path.iterdir()] == ["x.ckpt"]  # no temporary file left


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ("{size: 30000}", "within 1 s"),  # the check's limit, lowered here from 5 s
        ("{max_steps: abc}", "max_steps='abc' must be a whole number >= 1"),
        ("{max_steps: -1}", "max_steps=-1 must be a whole number >= 1"),
        ("{agent_view_size: 5}", "agent_view_size cannot be set"),
        ("{render_mode: human}", "render_mode cannot be set"),
        ("{agent_start_pos: [0, 0]}", "do not fit MiniGrid-Empty-5x5-v0"),
        ("{no_such_argument: 1}", "do not fit MiniGrid-Empty-5x5-v0"),
    ],
)
def test_minigrid_kwargs_that_make_no_working_env_are_one_line_before_any_work(tmp_path, monkeypatch, kwargs, fragment):
    monkeypatch.setattr("duo_ai.envs.minigrid.KWARGS_CHECK_SECONDS", 1)
    args = ["train", "-c", "minigrid_agent", "env.task=MiniGrid-Empty-5x5-v0", f"env.kwargs={kwargs}"]
    assert_user_error(cli(*args, f"experiments_dir={tmp_path}"), fragment)
    assert not any(tmp_path.iterdir())


# -- rules of every command: one value per option, paths the file system refuses ----------------------
@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["eval", "--checkpoint", "R", "-n", "2", "--episodes", "3"], "-n is given twice (-n 2 and --episodes 3)"),
        (["eval", "--checkpoint", "R", "--split", "test", "--split=train"], "--split is given twice"),
        (["eval", "--checkpoint", "R", "-n", "2", "-n", "2"], "-n is given twice"),
        (["train", "--progress", "--no-progress"], "--progress is given twice"),
        (["study", "minigrid_smoke", "--out", "A", "--out", "B"], "--out is given twice"),
    ],
)
def test_a_single_value_option_given_twice_is_refused(root, args, fragment):
    refused(root, args, fragment)


def test_a_repeatable_option_and_a_negative_value_are_not_counted_as_repeats(root):
    result = cli("eval", "--checkpoint", "R", "-n", "1", "-t", "-1")  # -1 is -t's value, not an option
    assert_user_error(result, "--temperature")  # refused for its range, not as a repeat
    assert "twice" not in result.output


LONG = "a" * 300


TOO_LONG = "a name in it is too long"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["configs", LONG], TOO_LONG),
        (["train", "-c", LONG], TOO_LONG),
        (["train", f"name={LONG}"], "at most 200 bytes"),
        (["study", LONG], TOO_LONG),
        (["study", "minigrid_smoke", "--out", f"x/{LONG}"], "cannot be created (File name too long"),
        (["eval", "--checkpoint", f"{LONG}.ckpt"], TOO_LONG),
        (["eval", "--checkpoint", "R", "-n", "1", "--json", f"{LONG}.json"], TOO_LONG),
        (["plot", "R", "-o", f"{LONG}.png"], TOO_LONG),
    ],
    ids=lambda v: " ".join(v)[:20] if isinstance(v, list) else "",
)
def test_a_name_over_255_bytes_is_one_line_before_any_work(root, args, fragment):
    refused(root, args, fragment)


@pytest.mark.parametrize("out", ["/proc/duo_ai_x", "/sys/kernel/duo_ai_x"])
def test_a_study_folder_that_cannot_be_created_is_one_line(root, out):
    refused(root, ["study", "minigrid_smoke", "--out", out], f"study folder {out} cannot be created")


# -- cost weights, strict JSON, the study report's folders ---------------------------------------------
STUDY = Path(__file__).resolve().parents[1] / "results" / "minigrid_distshift"


@pytest.mark.parametrize(
    "args",
    [
        ["eval", "--checkpoint", "R", "-n", "1", "--cost-weight", "1e308"],
        ["study-report", str(STUDY / "evals"), "-w", "1e308", "-o", "rep"],
        ["study-report", str(STUDY / "evals"), "-w", "0.4", "--weights", "0,1e308", "-o", "rep"],
        ["study", "minigrid_smoke", "--out", "S", "weights=[0,1e308]"],
    ],
    ids=["eval", "study-report -w", "study-report --weights", "study weights"],
)
def test_a_cost_weight_whose_rewards_would_not_be_finite_is_refused(root, args):
    refused(root, args, "1000000]")


def test_json_outputs_are_strict_json(root):
    from duo_ai.core.files import json_lines, json_text

    assert json.loads(json_text({"a": [float("nan"), 1.5, float("-inf")]})) == {"a": [None, 1.5, None]}
    assert "NaN" not in json_lines({"std": float("nan")})
    assert cli("eval", "--checkpoint", "R", "-n", "1", "--json", "e.json").exit_code == 0
    json.loads((root / "e.json").read_text(), parse_constant=lambda name: pytest.fail(f"{name} in eval --json"))


def test_study_report_refuses_an_output_inside_the_evaluations_and_a_missing_root(root):
    evals = STUDY / "evals"
    refused(
        root, ["study-report", str(evals), "-w", "0.4", "-o", str(evals / "random")], "in method random's evaluations"
    )
    refused(root, ["study-report", str(evals), "-w", "0.4", "-o", "rep", "--root", "/nonexistent"], "not a folder")
    assert not (evals / "random" / "table.json").exists()


# -- removing a key a config file sets: ~key ------------------------------------------------------------
def test_a_tilde_override_removes_a_key_the_files_set_so_it_takes_its_default():
    doorkey = ["env.task=MiniGrid-DoorKey-5x5-v0"]
    assert load_config("minigrid_agent").env.kwargs == {"agent_start_pos": None}
    assert load_config("minigrid_agent", [*doorkey, "~env.kwargs.agent_start_pos"]).env.kwargs == {}
    assert load_config("minigrid_agent", [*doorkey, "~env.kwargs"]).env.kwargs == {}
    default = load_config().algorithm.total_timesteps  # PPO's own, not minigrid_agent's 250,000
    assert load_config("minigrid_agent", ["~algorithm.total_timesteps"]).algorithm.total_timesteps == default != 250000
    with pytest.raises(ConfigError, match="~env.kwargs.agent_start_pox removes nothing"):
        load_config("minigrid_agent", ["~env.kwargs.agent_start_pox"])
    with pytest.raises(ConfigError, match="must look like ~key"):
        load_config("minigrid_agent", ["~env.kwargs=3"])


def test_kwargs_of_another_task_name_both_ways_to_drop_them(tmp_path):
    args = ["train", "-c", "minigrid_agent", "env.task=MiniGrid-DoorKey-5x5-v0", f"experiments_dir={tmp_path}"]
    assert_user_error(cli(*args), "env.kwargs={}", "~env.kwargs.NAME")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("command", ["train", "study"])
@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_a_config_that_is_a_device_or_a_pipe_is_named_for_what_it_is(tmp_path, command, kind):
    path = "/dev/zero" if kind == "device" else str(tmp_path / "f.yaml")
    if kind == "fifo":
        os.mkfifo(path)
    args = [command, "-c", path] if command == "train" else [command, path]
    assert_user_error(cli(*args), f"config file {path} is not a regular file")


# -- errors that name the cause ----------------------------------------------------------------------
def test_an_agent_played_on_another_task_names_the_task_not_the_model(tmp_path):
    run = ["train", "-c", "cartpole", f"experiments_dir={tmp_path}", "name=cp", "algorithm.total_timesteps=256"]
    assert cli(*run, "evaluation.num_episodes=0", "--no-progress").exit_code == 0
    result = cli("eval", "--checkpoint", tmp_path / "cp", "-n", "1", "env.task=Acrobot-v1")
    assert_user_error(
        result, "trained on CartPole-v1 and its network does not fit Acrobot-v1", "play it on CartPole-v1"
    )
    assert "different model" not in result.stderr


def test_a_damaged_embedded_agent_is_named_as_the_copy_not_the_file(tmp_path_factory, tmp_path):
    from tests.coord_fixtures import always_coordinators

    payload = load_checkpoint(always_coordinators(tmp_path_factory)["novice"] / "last.ckpt")
    weights = payload["agents"]["train_novice"]["model_state_dict"]
    name = next(k for k, v in weights.items() if v.ndim == 2)
    weights[name] = torch.zeros(weights[name].shape[0] + 1, weights[name].shape[1])
    save_checkpoint(tmp_path / "edited.ckpt", payload)
    result = cli("eval", "--checkpoint", tmp_path / "edited.ckpt", "-n", "1")
    assert_user_error(result, "the train_novice that the coordinator's checkpoint carries (a copy of")


@pytest.mark.parametrize(
    ("planted", "kind"),
    [("evals/ppo_s2", "file"), ("logs", "file"), ("table.json", "folder"), ("ppo_w0", "file"), ("report", "file")],
)
def test_a_study_path_of_the_wrong_kind_is_refused_before_any_job(tmp_path, planted, kind):
    out = tmp_path / "S"
    path = out / planted
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir() if kind == "folder" else path.write_text("mine")
    before = snapshot(out)
    assert_user_error(cli("study", "minigrid_smoke", "--out", out), str(path))
    assert snapshot(out) == before


@pytest.mark.parametrize(
    ("planted", "record", "fragment"),
    [
        ("evals/random/w0.json", {"num_episodes": 999, "seed": 1, "split": "test"}, "holds num_episodes=999"),
        ("evals/ppo/w1.json", {"num_episodes": 4, "seed": 7, "split": "test"}, "holds seed=7"),
        ("ask_map/ppo_w0.json", {"episodes": 999, "seed": 1, "split": "test"}, "holds episodes=999"),
    ],
)
def test_an_evaluation_made_with_other_settings_is_refused_before_any_job(tmp_path, planted, record, fragment):
    out = tmp_path / "S"
    (out / planted).parent.mkdir(parents=True)
    (out / planted).write_text(json.dumps(record))
    before = snapshot(out)
    assert_user_error(cli("study", "minigrid_smoke", "--out", out), str(out / planted), fragment, "--out NEWDIR")
    assert snapshot(out) == before
