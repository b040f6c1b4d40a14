"""`duo-ai ask-map`: where on the grid a MiniGrid coordinator asks for the expert, beside where the
novice alone fails.

Two passes over the same test episodes (same levels, same seed, same agents' random numbers), those
`duo-ai eval` plays with the same `--seed`, `--episodes` and `evaluation.num_envs`:
1. the coordinator: per grid cell, how often the agent stood there (`visits`) and how often the
   coordinator handed that step to the expert (`asks`); the ask rate is asks / visits;
2. the novice alone (never asking): per cell, how many of its episodes ended there in failure:
   the step from that cell walked into something deadly (lava), or its time ran out there.
If asks follow the state, the ask rate is high on and next to the novice's failure cells and low
elsewhere; `asks_on_failures` against `visits_on_failures` (and the same on or next to those cells)
says it in two numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from duo_ai.config import Config
from duo_ai.coordination.config import is_coordination_run
from duo_ai.coordination.env import NOVICE
from duo_ai.core.checkpoint import DIGEST
from duo_ai.core.checks import check_options
from duo_ai.core.errors import ConfigError
from duo_ai.core.files import atomic_path, atomic_write_text, check_output_file, json_text
from duo_ai.eval_job import EVAL_OPTIONS
from duo_ai.evaluation import play_episodes
from duo_ai.playing import load_for_playing
from duo_ai.reports import check_output, require

# Cells visited fewer times than this get no ask rate on the map (a rate of 1 visit is noise).
MIN_VISITS = 5


@dataclass
class CellCounts:
    """Per-cell counts [height, width] over the counted episodes of one pass, and their levels (env by
    env, in the order of `duo-ai eval`'s `episode_level_seeds`)."""

    visits: np.ndarray
    asks: np.ndarray
    failures: np.ndarray
    episodes: int
    level_seeds: list[int]


def play(policy: Any, env: Any, episodes: int, seed: int, temperature: float) -> CellCounts:
    """Run `policy` on a MiniGrid coordination env for exactly `episodes` episodes (fixed quota per
    env, as evaluation does) and count visits, asks and failures per cell."""
    base = env.base_env
    width, height = base.grid_size()
    visits, asks, failures = (np.zeros((height, width), dtype=np.int64) for _ in range(3))
    levels: list[list[int]] = [[] for _ in range(env.num_envs)]
    for step in play_episodes(policy, env, episodes, temperature, seed, watch=lambda obs: base.agent_cells()):
        cells, counting = step.seen, step.counting
        x, y = cells[counting, 0], cells[counting, 1]
        np.add.at(visits, (y, x), 1)
        np.add.at(asks, (y, x), step.info["agent"][counting] != NOVICE)
        for i in step.ended:
            episode = step.info["episode"]
            if step.truncated[i] or episode["base_reward"][i] <= 0:
                failures[cells[i, 1], cells[i, 0]] += 1
            levels[i].append(int(episode["level_seed"][i]))
    return CellCounts(visits, asks, failures, episodes, [level for env_levels in levels for level in env_levels])


class NeverAsk:
    """The novice alone: answers 0 everywhere."""

    def eval(self) -> None: ...

    def reset(self, done: np.ndarray) -> None: ...

    def act(self, obs: Any, temperature: float = 1.0) -> Any:
        return torch.zeros(len(obs["novice_logits"]), dtype=torch.long)


def near(mask: np.ndarray) -> np.ndarray:
    """`mask` grown by one cell in the four grid directions (a failure is decided one step before it)."""
    grown = mask.copy()
    grown[1:] |= mask[:-1]
    grown[:-1] |= mask[1:]
    grown[:, 1:] |= mask[:, :-1]
    grown[:, :-1] |= mask[:, 1:]
    return grown


def summarise(coord: CellCounts, novice: CellCounts) -> dict[str, Any]:
    """Plain numbers and per-cell arrays for the JSON beside the picture."""
    failed = novice.failures > 0
    failing = near(failed)
    asks, visits = coord.asks.sum(), coord.visits.sum()
    rate = np.where(coord.visits >= MIN_VISITS, coord.asks / np.maximum(coord.visits, 1), np.nan)
    return {
        "episodes": coord.episodes,
        "episode_level_seeds": coord.level_seeds,
        "ask_fraction": float(asks / max(visits, 1)),
        # Share of all asks (and of all steps) made on a cell where the novice alone failed, and on or
        # next to one: asks that follow the state are a larger share than the steps there.
        "asks_on_failures": float(coord.asks[failed].sum() / max(asks, 1)),
        "visits_on_failures": float(coord.visits[failed].sum() / max(visits, 1)),
        "asks_near_failures": float(coord.asks[failing].sum() / max(asks, 1)),
        "visits_near_failures": float(coord.visits[failing].sum() / max(visits, 1)),
        "novice_failure_rate": float(novice.failures.sum() / max(novice.episodes, 1)),
        "ask_rate": [[None if np.isnan(v) else round(float(v), 4) for v in row] for row in rate],
        "visits": coord.visits.tolist(),
        "asks": coord.asks.tolist(),
        "novice_failures": novice.failures.tolist(),
    }


def draw(path: Path, background: np.ndarray, summary: dict[str, Any], title: str) -> None:
    """Two panels on the grid: the coordinator's ask rate per cell, the novice's failures per cell."""
    require("matplotlib", "ask-map")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rate = np.array(summary["ask_rate"], dtype=float)
    failures = np.array(summary["novice_failures"], dtype=float) / max(summary["episodes"], 1)
    height, width = rate.shape
    extent = (0, width, height, 0)
    fig, axes = plt.subplots(1, 2, figsize=(2 * (1.1 * width / 2 + 1.2), 1.1 * height / 2 + 1.2), squeeze=False)
    panels = [
        (axes[0, 0], np.ma.masked_invalid(rate), "Blues", 1.0, "coordinator: P(ask expert) per cell"),
        (axes[0, 1], np.ma.masked_equal(failures, 0), "Reds", None, "novice alone: failures per episode"),
    ]
    for ax, values, cmap, vmax, label in panels:
        ax.imshow(background, extent=extent, interpolation="nearest")
        shown = ax.imshow(values, extent=extent, cmap=cmap, alpha=0.75, vmin=0, vmax=vmax, interpolation="nearest")
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
        ax.set_title(label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        f"{title}: {summary['ask_fraction']:.0%} of steps asked; on the novice's failure cells "
        f"{summary['asks_on_failures']:.0%} of asks vs {summary['visits_on_failures']:.0%} of steps "
        f"(on or next to them: {summary['asks_near_failures']:.0%} vs {summary['visits_near_failures']:.0%})",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def ask_map(
    checkpoint: str,
    out: Path,
    split: str = "test",
    episodes: int = 500,
    seed: int | None = None,
    temperature: float | None = None,
    overrides: list[str] = (),
    log: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """Draw `out` (.png) and write `out` with .json: the coordinator's ask rate per cell beside the
    novice's failures per cell over the same `episodes` episodes of `split`, those `duo-ai eval`
    plays with the same `seed`, `episodes` and `evaluation.num_envs`. The coordinator samples at
    `temperature` (default: its evaluation.temperature, as `duo-ai eval` does)."""
    out = check_output(Path(out), (".png",))
    check_output_file(out.with_suffix(".json"), "-o (its .json)")
    check_options(EVAL_OPTIONS, episodes, temperature, seed, split)

    def check(path: str, config: Config) -> None:
        if config.env.name != "minigrid" or not is_coordination_run(config):
            raise ConfigError(
                f"duo-ai ask-map draws a MiniGrid coordinator's asks on the grid; {path} is "
                f"{'a coordinator' if is_coordination_run(config) else 'an agent'} on "
                f"{config.env.name}/{config.env.task}"
            )

    with load_for_playing(
        checkpoint, split, seed, episodes, temperature, overrides=overrides, check=check, log=log
    ) as playing:
        env, level_seed = playing.env, playing.level_seed
        coord = play(playing.policy, env, episodes, level_seed, playing.temperature)
        novice = play(NeverAsk(), env, episodes, level_seed, playing.temperature)
        env.reset(seed=level_seed)
        background = env.base_env.envs[0].grid.render(16, agent_pos=(-1, -1))
    summary = summarise(coord, novice)
    summary.update(
        checkpoint=playing.checkpoint,
        checkpoint_sha256=playing.payload.get(DIGEST),
        env=playing.task,
        split=playing.split,
        seed=playing.seed,
        temperature=playing.temperature,
        output=str(out),
    )
    with atomic_path(out) as tmp:
        draw(tmp, background, summary, f"{playing.task} / {playing.split}, {episodes} episodes")
    atomic_write_text(out.with_suffix(".json"), json_text(summary, indent=1) + "\n")
    return summary
