"""`duo-ai eval`: load a checkpoint, rebuild its policy and environment, evaluate N episodes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.table import Table

from duo_ai.build import config_from_checkpoint
from duo_ai.config import MAX_EPISODES, Config
from duo_ai.coordination.config import is_coordination_run
from duo_ai.coordination.sweep import cost_sweep
from duo_ai.core.checkpoint import DIGEST
from duo_ai.core.checks import INT32_MAX, Rule, check_options
from duo_ai.core.errors import ConfigError
from duo_ai.evaluation import evaluate
from duo_ai.playing import load_for_playing

__all__ = ["config_from_checkpoint", "evaluate_checkpoint", "metrics_tables"]


# The command-line options of `duo-ai eval`, by the rules of the config fields they stand for.
EVAL_OPTIONS = {
    "--episodes": Rule(ge=1, le=MAX_EPISODES),
    "--temperature": Rule(ge=0),
    "--seed": Rule(ge=0, le=INT32_MAX),
    "--split": Rule(test=lambda s: bool(s.strip()), allowed="a split name (train, test, or one from env.splits)"),
}


def evaluate_checkpoint(
    checkpoint: str,
    split: str | None = None,
    num_episodes: int | None = None,
    temperature: float | None = None,
    config_paths: Any = None,
    overrides: list[str] = (),
    seed: int | None = None,
    cost_weights: list[float] | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """Load a checkpoint (or a run folder's last.ckpt) and evaluate it; unset arguments come from its config.

    With `cost_weights` (a coordinator only) the metrics add `cost_sweep`, the reward at each
    expert-query cost weight on the same episodes, and `auc`, the area under that curve.
    """
    check_options(EVAL_OPTIONS, num_episodes, temperature, seed, split)

    def check(path: str, config: Config) -> None:
        if cost_weights and not is_coordination_run(config):
            raise ConfigError(f"--cost-sweep evaluates coordinators; {path} is a base agent (no train_novice/expert)")

    with load_for_playing(
        checkpoint, split, seed, num_episodes, temperature, config_paths=config_paths, overrides=overrides,
        check=check, log=log,
    ) as playing:  # fmt: skip
        result = evaluate(
            playing.policy, playing.env, playing.episodes, playing.temperature, playing.level_seed, playing.split
        )
    config = playing.config
    metrics = {**result.metrics(), **playing.notes}
    if is_coordination_run(config):
        c = config.coordination
        metrics.update(
            cost_weight=c.expert_query_cost_weight,
            base_penalty=c.base_penalty,
            switch_agent_cost_weight=c.switch_agent_cost_weight,
        )
        if cost_weights:
            metrics.update(cost_sweep(result, c.base_penalty, c.switch_agent_cost_weight, cost_weights))
    metrics.update(
        {
            "checkpoint": playing.checkpoint,
            "checkpoint_sha256": playing.payload.get(DIGEST),
            "global_step": int(playing.payload.get("global_step", 0)),
            "env": playing.task,
            "seed": playing.seed,
        }
    )
    return metrics


def metrics_tables(checkpoint: Any, metrics: dict[str, Any]) -> list[Table]:
    """The evaluation as `duo-ai eval` prints it: its numbers, and for a cost sweep the reward at each weight."""
    table = Table(title=f"{checkpoint} on {metrics['env']} / {metrics['split']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        if key in ("checkpoint", "split", "env", "cost_sweep") or isinstance(value, list):
            continue
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    if "cost_sweep" not in metrics:
        return [table]
    sweep = Table(title=f"reward vs expert-query cost weight (AUC {metrics['auc']:.4g})")
    for column in ("cost weight", "reward mean", "reward std"):
        sweep.add_column(column, justify="right")
    for row in metrics["cost_sweep"]:
        sweep.add_row(f"{row['cost_weight']:g}", f"{row['reward_mean']:.4g}", f"{row['reward_std']:.4g}")
    return [table, sweep]
