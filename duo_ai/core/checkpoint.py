"""Checkpoint files: plain dicts of tensors and numbers, written atomically, loaded safely.

A checkpoint never holds pickled classes, so `torch.load(path, weights_only=True)` opens it.
Writing is atomic (`duo_ai.core.files`), so a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import pickle
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
