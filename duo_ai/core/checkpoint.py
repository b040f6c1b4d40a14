"""Checkpoint files: plain dicts of tensors and numbers, written atomically, loaded safely.

A checkpoint never holds pickled classes, so `torch.load(path, weights_only=True)` opens it.
Writing is atomic (`duo_ai.core.files`), so a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from duo_ai.core.errors import CheckpointError
from duo_ai.core.files import atomic_write

FORMAT = "duo_ai.checkpoint.v1"


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Atomically write `payload` (plus the format tag) to `path`."""
    atomic_write(path, lambda f: torch.save({"format": FORMAT, **payload}, f))


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a duo-ai checkpoint onto the CPU, with a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; pass the path of a .ckpt file written by duo-ai train")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for truncated or foreign files
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"checkpoint {path} is corrupt or not a duo-ai checkpoint ({reason})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a duo-ai checkpoint (no {FORMAT!r} format tag)")
    return payload
