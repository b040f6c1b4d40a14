"""What a rerun of a study may reuse: only a run or an evaluation the study would make the same way now.

A study reuses finished runs (summary.json), resumes stopped ones (last.ckpt) and reuses finished
evaluations (OUT/evals*/METHOD/wW.json). Each is first compared with what the study asks for now:

- a run: its config.yaml against the config the study resolves for it (every key that changes what
  is trained; how it computes and what it logs may differ), and, for a coordinator, the novice and
  expert it carries against the agent checkpoints the study uses now (their weights);
- an evaluation: its episodes, seed, split and cost weight, and the checksum of the checkpoint it
  evaluated against that checkpoint now.

A difference is refused in one line naming the file and the key, before any job starts where the
files are already there; nothing is redone behind the user's back, and nothing is deleted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from duo_ai.config import Config, config_to_dict, load_config
from duo_ai.coordination.agents import same_weights
from duo_ai.coordination.config import AGENT_KEYS
from duo_ai.core.checkpoint import DIGEST, load_checkpoint
from duo_ai.core.errors import ConfigError, DuoAIError
from duo_ai.runs import HOW_IT_RUNS, flatten, is_among

# A run made otherwise only in these keys is reused: how it computed, logged, evaluated itself.
HOW_IT_RAN = (*HOW_IT_RUNS, "overwrite")
# Keys holding paths: compared as the files they name, those inside the study folder relative to
# it, so that a study folder moved elsewhere is still the same study. (Where the run itself lies,
# experiments_dir, is the study folder by definition.)
PATHS = ("policy.load_path", *AGENT_KEYS)
FIX = "pass --out NEWDIR for a new study, or remove {what} to make it again"


def check_run(run: Path, config: Config, derived: tuple[str, ...] = ()) -> None:
    """Refuse a run folder the study would not make this way now (nothing there: fine).

    `derived`: keys the study sets only when the run starts (PPO's start at random's rate)."""
    if not (run / "config.yaml").is_file():
        if (run / "summary.json").is_file():
            raise ConfigError(f"{run} has a summary.json but no config.yaml; {FIX.format(what=run)}")
        return
    if (run / "summary.json").is_file() and not (run / "last.ckpt").is_file():
        raise ConfigError(f"{run} has a summary.json but no last.ckpt; {FIX.format(what=run)}")
    try:
        stored = flatten(config_to_dict(load_config(run / "config.yaml")))
    except DuoAIError as e:
        raise ConfigError(f"{run}/config.yaml cannot be read ({e}); {FIX.format(what=run)}") from None
    now = flatten(config_to_dict(config))
    roots = (stored.pop("experiments_dir", None), now.pop("experiments_dir", None))
    for key in sorted(stored.keys() | now.keys()):
        old, new = stored.get(key), now.get(key)
        if key in derived or is_among(key, HOW_IT_RAN):
            continue
        if key == "coordination.base_penalty" and new is None:
            continue  # the cost unit the run measured and recorded
        if (
            key in PATHS
            and old is not None
            and new is not None
            and _in_study(old, roots[0]) == _in_study(new, roots[1])
        ):
            continue
        if old != new:
            raise ConfigError(
                f"{run} was made with {key}={old!r}, but the study now gives {key}={new!r}; {FIX.format(what=run)}"
            )


def agent_weights(path: str) -> dict[str, torch.Tensor] | None:
    """An agent checkpoint's weights, to compare with those a coordinator carries (None: no file yet)."""
    return load_checkpoint(path).get("model_state_dict") or {} if Path(path).is_file() else None


def check_agents(run: Path, agents: dict[str, tuple[str, dict[str, torch.Tensor] | None]]) -> None:
    """Refuse a coordinator whose novice/expert are not the ones it was trained with. `agents`: config
    key -> (the checkpoint the study uses now, its `agent_weights`)."""
    if not (run / "last.ckpt").is_file():
        return
    embedded = load_checkpoint(run / "last.ckpt").get("agents") or {}
    for key, (path, now) in agents.items():
        carried = embedded.get(key)
        if carried is None:
            continue
        if now is None:
            raise ConfigError(f"{run} was trained with a {key} that is no longer at {path}; {FIX.format(what=run)}")
        if not same_weights(carried.get("model_state_dict") or {}, now):
            raise ConfigError(
                f"{run} was trained with another {key} than {path} holds now (its weights differ); "
                f"{FIX.format(what=run)}"
            )


def check_evaluation(file: Path, checkpoint: str | None, asked: dict[str, Any], made: Path | None = None) -> None:
    """Refuse an evaluation file (or an ask map's) that does not hold what the study asks now
    (`asked`: num_episodes, seed, split, cost_weight), that evaluated another checkpoint than
    `checkpoint` (None: the one it names), or another state of it than the one there now. `made`:
    the folder to remove to make it again (default: the evaluations folder it lies two levels in)."""
    fix = FIX.format(what=made or file.parent.parent)
    try:
        done = json.loads(file.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{file} cannot be read ({e}); {fix}") from None
    for key, value in asked.items():
        if done.get(key) != value:
            found = done.get(key)
            raise ConfigError(f"{file} holds {key}={found!r}, but the study now asks for {key}={value!r}; {fix}")
    # Which checkpoint: by its checksum where the file records one (a study folder may have moved),
    # else by its run and file name.
    named, stored = str(done.get("checkpoint")), done.get("checkpoint_sha256")
    target = named if checkpoint is None else checkpoint
    if stored is not None and Path(target).is_file() and load_checkpoint(target).get(DIGEST) != stored:
        raise ConfigError(f"{file} evaluated another checkpoint than {target} holds now (its checksum differs); {fix}")
    if stored is None and checkpoint is not None and Path(named).parts[-2:] != Path(checkpoint).parts[-2:]:
        raise ConfigError(f"{file} evaluated {named}, but the study now evaluates {checkpoint}; {fix}")


def _in_study(path: Any, root: Any) -> str:
    """A path as the file it names: relative to the study folder `root` where it lies inside it."""
    resolved = _file(path)
    if root is not None and resolved.is_relative_to(Path(str(root)).resolve()):
        return str(resolved.relative_to(Path(str(root)).resolve()))
    return str(resolved)


def _file(path: Any) -> Path:
    """The file a path names, resolved (a run folder names its last.ckpt)."""
    path = Path(str(path)).expanduser()
    return (path / "last.ckpt" if path.is_dir() and (path / "last.ckpt").is_file() else path).resolve()
