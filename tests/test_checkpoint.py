"""Checkpoint files: atomic writes, safe loading, and nothing lost when training is stopped."""

import argparse
import signal
import subprocess
import sys
import time

import pytest
import torch

from duo_ai.config import load_config
from duo_ai.core import checkpoint
from duo_ai.core.checkpoint import load_checkpoint, save_checkpoint
from duo_ai.core.errors import CheckpointError
from duo_ai.training import Trainer
from tests.conftest import TINY


def test_save_load_round_trip(tmp_path):
    payload = {"model_state_dict": {"w": torch.randn(3, 4)}, "global_step": 7, "config": {"a": [1, 2.5, None]}}
    save_checkpoint(tmp_path / "x.ckpt", payload)
    loaded = torch.load(tmp_path / "x.ckpt", weights_only=True)
    assert torch.equal(loaded["model_state_dict"]["w"], payload["model_state_dict"]["w"])
    assert loaded["global_step"] == 7 and loaded["config"] == {"a": [1, 2.5, None]}
    assert load_checkpoint(tmp_path / "x.ckpt")["format"] == checkpoint.FORMAT


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    save_checkpoint(path, {"global_step": 1})
    before = path.read_bytes()

    def crash(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"global_step": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temp file left behind


def test_pickled_classes_are_refused(tmp_path):
    path = tmp_path / "pickled.ckpt"
    torch.save({"format": checkpoint.FORMAT, "obj": argparse.Namespace(a=1)}, path)
    with pytest.raises(CheckpointError, match="not a duo-ai checkpoint: it holds pickled Python objects"):
        load_checkpoint(path)


@pytest.mark.slow
def test_sigterm_saves_last_checkpoint_and_resume_works(tmp_path):
    overrides = [o for o in TINY if not o.startswith(("algorithm.total_timesteps", "algorithm.save_freq"))]
    cmd = [sys.executable, "-m", "duo_ai_cli", "train", *overrides, "algorithm.total_timesteps=100000000"]
    cmd += ["algorithm.save_freq=0", "name=stopped", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "experiments" / "stopped" / "train.log"
    deadline = time.time() + 120
    # "iter 3" logged means iteration 2's snapshot was taken (a stop saves the last whole iteration's
    # state; one that lands between iteration 2's log line and its snapshot would save iteration 1's).
    while time.time() < deadline and not (log.exists() and "iter 3 " in log.read_text()):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr  # SIGTERM: 128 + 15
    assert "Traceback" not in stderr
    saved = torch.load(tmp_path / "experiments" / "stopped" / "last.ckpt", weights_only=True)
    assert saved["global_step"] >= 256  # save_freq=0: only the stop itself saved it


@pytest.mark.slow
def test_a_live_run_folder_is_neither_overwritten_nor_resumed_by_another_run(tmp_path):
    overrides = [o for o in TINY if not o.startswith(("algorithm.total_timesteps", "algorithm.save_freq"))]
    train = [sys.executable, "-m", "duo_ai_cli", "train", *overrides, "name=live", "--no-progress"]
    proc = subprocess.Popen(
        [*train, "algorithm.total_timesteps=100000000", "algorithm.save_freq=1"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    folder = tmp_path / "experiments" / "live"
    deadline = time.time() + 120
    while time.time() < deadline and not (folder / "last.ckpt").exists():
        time.sleep(0.2)
    try:
        assert (folder / "run.lock").read_text().split()[1] == str(proc.pid)
        for second in (
            [*train, "overwrite=true"],
            [sys.executable, "-m", "duo_ai_cli", "train", "--resume", str(folder)],
        ):
            done = subprocess.run(second, cwd=tmp_path, capture_output=True, text=True, timeout=120)
            message = " ".join(done.stderr.split())  # rich wraps long lines
            assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
            assert f"is in use by process {proc.pid}, which is still training it" in message
        assert not list(tmp_path.glob("experiments/.live.old-*"))  # the live run was not moved aside
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143 and not (folder / "run.lock").exists(), stderr[-3000:]
    # Once it has stopped, the folder is free again.
    done = subprocess.run([*train, "overwrite=true", "algorithm.total_timesteps=64"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_an_interrupt_is_not_replaced_by_a_failure_while_closing(tmp_path, capsys):
    # An interrupt can stop an environment or a writer mid-call, so closing it may fail as well:
    # the interrupt is still what the run ends with (exit 130), and the run folder's lock is released.
    config = load_config(overrides=[*TINY, f"experiments_dir={tmp_path}", "name=stopped"])
    trainer = Trainer(config, show_progress=False)
    trainer.run()

    def broken_close() -> None:
        raise RuntimeError("environment left mid-step")

    trainer.parts.close = broken_close
    with pytest.raises(KeyboardInterrupt), trainer:
        raise KeyboardInterrupt
    said = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert "closing the run failed too (RuntimeError: environment left mid-step)" in said
    assert not (tmp_path / "stopped" / "run.lock").exists()
