"""Checkpoint files: plain dicts of tensors and numbers, written atomically, loaded safely.

A checkpoint never holds pickled classes, so `torch.load(path, weights_only=True)` opens it.
Writing is atomic (`duo_ai.core.files`), so a crash mid-write leaves the previous checkpoint intact.
Every checkpoint carries `sha256`, a digest of its whole contents (every tensor's bytes, every
number and string), checked on load: bytes damaged on disk or in transfer are refused rather than
evaluated. A checkpoint written before the digest existed still loads, with one line saying so.
Weights that are not finite (NaN, infinity) are refused on load too.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from duo_ai.core.errors import CheckpointError
from duo_ai.core.files import atomic_write

FORMAT = "duo_ai.checkpoint.v1"
DIGEST = "sha256"
ZIP_MAGIC = b"PK\x03\x04"
# Checkpoints already said to be unverified (no digest) in this process: one line each.
_unverified_noted: set[Path] = set()


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any], new: bool = False) -> None:
    """Atomically write `payload` (plus the format tag and its digest) to `path`.

    The archive is made in memory first, so a full disk is an `OSError` of the write (reported
    as an `OutputError` by `atomic_write`), not a failure inside torch's zip writer.
    """
    tagged = {"format": FORMAT, **{k: v for k, v in payload.items() if k != DIGEST}}
    buffer = io.BytesIO()
    torch.save({**tagged, DIGEST: digest(tagged)}, buffer)
    atomic_write(path, lambda f: f.write(buffer.getbuffer()), new=new)  # new: never replace a file


def digest(payload: dict[str, Any]) -> str:
    """SHA-256 over a checkpoint's contents: keys, tensors (dtype, shape, bytes), numbers and strings."""
    h = hashlib.sha256()
    _feed(h, payload)
    return h.hexdigest()


def _feed(h: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}:".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, np.ndarray):
        h.update(f"A{value.dtype}{value.shape}:".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, dict):
        h.update(f"D{len(value)}:".encode())
        for key in sorted(value, key=repr):
            h.update(f"{key!r}=".encode())
            _feed(h, value[key])
    elif isinstance(value, (list, tuple)):
        h.update(f"{type(value).__name__}{len(value)}:".encode())
        for item in value:
            _feed(h, item)
    else:
        h.update(f"{type(value).__name__}:{value!r};".encode())


def resolve_checkpoint_path(path: str | os.PathLike) -> Path:
    """`path` itself, or `<path>/last.ckpt` when `path` is a run folder."""
    path = Path(path)
    if not path.is_dir():
        return path
    if (path / "last.ckpt").is_file():
        return path / "last.ckpt"
    found = ", ".join(sorted(p.name for p in path.glob("*.ckpt"))) or "none"
    raise CheckpointError(
        f"checkpoint {path} is a folder without last.ckpt (.ckpt files in it: {found}); pass a .ckpt file"
    )


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a duo-ai checkpoint (a file, or a run folder's last.ckpt) onto the CPU.

    Anything else is a `CheckpointError` in our words: a missing, empty, truncated or foreign file.
    """
    path = resolve_checkpoint_path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; pass the path of a .ckpt file written by duo-ai train")
    with path.open("rb") as f:
        head = f.read(len(ZIP_MAGIC))
    if head != ZIP_MAGIC:  # torch.save writes a zip archive; a truncated one still starts like one
        kind = "an empty file" if not head else "not a torch checkpoint file"
        raise CheckpointError(f"{path} is not a duo-ai checkpoint ({kind}); pass a .ckpt file written by duo-ai train")
    corrupt = f"checkpoint {path} is corrupt (truncated or damaged); use another checkpoint of the run or retrain"
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "GLOBAL" not in str(e):  # an opcode torch's safe loader does not know: damaged bytes
            raise CheckpointError(corrupt) from None
        raise CheckpointError(
            f"{path} is not a duo-ai checkpoint: it holds pickled Python objects, which duo-ai never writes "
            "(its checkpoints hold only tensors and numbers) and does not load"
        ) from None
    except Exception:  # torch raises many types for truncated or damaged archives
        raise CheckpointError(corrupt) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a duo-ai checkpoint (no {FORMAT!r} format tag)")
    verify(path, payload)
    return payload


def verify(path: Path, payload: dict[str, Any]) -> None:
    """Check (and remove) the payload's digest, and that its weights are finite."""
    stored = payload.pop(DIGEST, None)
    if stored is None:
        if path.resolve() not in _unverified_noted:
            _unverified_noted.add(path.resolve())
            print(
                f"note: {path} has no checksum (written by an older duo-ai), so it is loaded unverified; "
                "duo-ai export writes a copy with one",
                file=sys.stderr,
            )
    elif stored != digest(payload):
        raise CheckpointError(
            f"checkpoint {path} is corrupt: its contents do not match the checksum written with it (damaged on "
            "disk or in transfer); use another checkpoint of the run or retrain"
        )
    if not isinstance(payload.get("model_state_dict"), dict):
        raise CheckpointError(
            f"{path} holds no model weights (model_state_dict); pass a checkpoint written by duo-ai train or export"
        )
    for where, weights in _weights(payload):
        bad = next((k for k, v in weights.items() if torch.is_tensor(v) and not torch.isfinite(v).all()), None)
        if bad is not None:
            raise CheckpointError(
                f"checkpoint {path} holds weights that are not finite (NaN or infinity in {where}{bad}): the "
                "training had diverged; use an earlier checkpoint of the run or retrain with a lower "
                "algorithm.learning_rate"
            )


def _weights(payload: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The model weights a checkpoint holds: its own, and those of the agents a coordinator embeds."""
    found = [("", payload["model_state_dict"])]
    for name, agent in (payload.get("agents") or {}).items():
        if isinstance(agent, dict) and isinstance(agent.get("model_state_dict"), dict):
            found.append((f"agents.{name}.", agent["model_state_dict"]))
    return found


class CheckpointStore:
    """A run's rolling checkpoints: `checkpoints/step_<global step>.ckpt`, the newest `keep` of them,
    and `last.ckpt` naming the newest (a hard link, so it costs no second write).

    One corrupt or truncated file is then not the end of a run: `load_latest` falls back to the
    newest checkpoint that reads.
    """

    def __init__(self, run_dir: str | os.PathLike, keep: int = 3) -> None:
        self.run_dir = Path(run_dir)
        self.folder = self.run_dir / "checkpoints"
        self.last = self.run_dir / "last.ckpt"
        self.keep = max(1, keep)

    def save(self, payload: dict[str, Any], step: int) -> Path:
        path = self.folder / f"step_{step:012d}.ckpt"
        self.folder.mkdir(parents=True, exist_ok=True)
        save_checkpoint(path, payload)
        link_atomically(path, self.last)
        for old in self.saved()[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    def saved(self) -> list[Path]:
        """The rolling checkpoints, oldest first."""
        return sorted(self.folder.glob("step_*.ckpt")) if self.folder.is_dir() else []

    def load_latest(self) -> tuple[dict[str, Any], Path, list[str]]:
        """The newest readable checkpoint, its path, and why newer ones were skipped."""
        skipped: list[str] = []
        for path in [self.last, *reversed(self.saved())]:
            if not path.exists():
                continue
            try:
                return load_checkpoint(path), path, skipped
            except CheckpointError as e:
                skipped.append(str(e))
        reasons = f" ({'; '.join(skipped)})" if skipped else ""
        raise CheckpointError(f"no readable checkpoint in {self.run_dir}{reasons}; start a new run instead of --resume")


def link_atomically(source: Path, target: Path) -> None:
    """Make `target` name the same file as `source`, replacing it atomically (a copy where links fail)."""
    tmp = target.with_name(f".{target.name}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:  # a file system without hard links
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)
