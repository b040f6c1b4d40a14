"""Checkpoint files: plain dicts of tensors and numbers, written atomically, loaded safely.

A checkpoint never holds pickled classes, so `torch.load(path, weights_only=True)` opens it.
Writing is atomic (`duo_ai.core.files`), so a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import torch

from duo_ai.core.errors import CheckpointError
from duo_ai.core.files import atomic_write

FORMAT = "duo_ai.checkpoint.v1"
ZIP_MAGIC = b"PK\x03\x04"


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Atomically write `payload` (plus the format tag) to `path`."""
    atomic_write(path, lambda f: torch.save({"format": FORMAT, **payload}, f))


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
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{path} is not a duo-ai checkpoint: it holds pickled Python objects, which duo-ai never writes "
            "(its checkpoints hold only tensors and numbers) and does not load"
        ) from None
    except Exception:  # torch raises many types for truncated or damaged archives
        raise CheckpointError(
            f"checkpoint {path} is corrupt (truncated or damaged); use another checkpoint of the run or retrain"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a duo-ai checkpoint (no {FORMAT!r} format tag)")
    return payload


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
