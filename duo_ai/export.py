"""`duo-ai export`: a checkpoint cut down to what evaluating it needs, for sharing or committing.

A training checkpoint also holds what only `--resume` needs (the optimizer, every game's state,
the random streams, the reward normaliser): about 1.3 MB for 32 coinrun envs, on top of the
weights. A coordinator's checkpoint embeds its novice and expert (a few MB); `with_agents=False`
leaves them out, so many coordinators over one pair can share one copy of the agents.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from duo_ai.core.checkpoint import load_checkpoint, resolve_checkpoint_path, save_checkpoint
from duo_ai.core.errors import ConfigError
from duo_ai.core.files import check_output_file, refuse_special

# What `duo-ai eval`, `duo-ai video` and `policy.load_path` read from a checkpoint.
EVAL_KEYS = ("model_state_dict", "policy_config", "config", "global_step", "iteration", "calibration", "eval_metrics")


def export_checkpoint(source: str | os.PathLike, target: str | os.PathLike, with_agents: bool = True) -> dict[str, Any]:
    """Write `source`'s weights, configs (and calibration, agents) to `target`, which must not exist.

    Returns what was kept and left out, and both files' sizes in bytes.
    """
    refuse_special(Path(target), "export file")  # a pipe or a device is named as such, not as "exists"
    if Path(target).exists():
        raise ConfigError(f"{target} exists; export writes a new file and never replaces one: pass another -o")
    target = check_output_file(target, "export file")
    source = resolve_checkpoint_path(source)
    payload = load_checkpoint(source)
    keep = EVAL_KEYS + (("agents",) if with_agents else ())
    exported = {key: payload[key] for key in keep if key in payload}
    save_checkpoint(target, exported, new=True)
    return {
        "kept": sorted(exported),
        "left_out": sorted(key for key in payload if key not in exported and key != "format"),
        "source_bytes": source.stat().st_size,
        "target_bytes": target.stat().st_size,
        "needs_agents": bool(payload.get("agents")) and not with_agents,
    }
