"""`duo-ai`: train and evaluate PPO agents and coordinators on Procgen."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from duo_ai.core.errors import DuoAIError

app = typer.Typer(
    help="Train and evaluate PPO agents, and novice/expert coordinators, on Procgen games.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

OVERRIDES_HELP = "Config overrides as dotted key=value pairs, e.g. env.task=starpilot algorithm.learning_rate=3e-4."


def fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def _sigterm_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@app.command()
def train(
    overrides: list[str] | None = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="YAML config file (see configs/). Without it: the CPU quickstart."
    ),
    resume: Path | None = typer.Option(
        None, "--resume", help="Continue the run in this folder from its last.ckpt (overrides apply on top)."
    ),
    progress: bool = typer.Option(True, help="Show the live progress bar (on a terminal)."),
) -> None:
    """Train a policy. Writes experiments/<name>/: config.yaml, train.log, tb/, last.ckpt, best_<split>.ckpt."""
    from duo_ai.core.config import load_config
    from duo_ai.training import Trainer

    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        if resume is not None:
            if config is not None:
                fail("--resume takes the run's own config.yaml; drop --config (overrides still apply)")
            if not (resume / "last.ckpt").is_file():
                fail(f"cannot resume: {resume / 'last.ckpt'} not found; pass a run folder written by duo-ai train")
            cfg = load_config(resume / "config.yaml", overrides or [])
            cfg.experiments_dir, cfg.name = str(resume.parent), resume.name
        else:
            cfg = load_config(config, overrides or [])
        trainer = Trainer(cfg, resume=resume is not None, show_progress=progress)
        try:
            trainer.run()
        finally:
            trainer.close()
    except DuoAIError as e:
        fail(str(e))
    except KeyboardInterrupt:
        err.print("interrupted; last.ckpt saved")
        raise typer.Exit(130) from None


@app.command("eval")
def evaluate(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A .ckpt written by duo-ai train."),
    temperature: float | None = typer.Option(
        None, "--temperature", "-t", help="Sampling temperature; 0 = greedy. Default: evaluation.temperature."
    ),
    episodes: int | None = typer.Option(
        None, "--episodes", "-n", help="Number of complete episodes. Default: evaluation.num_episodes."
    ),
    split: str | None = typer.Option(
        None, "--split", help="Level split (train, test, or one from env.splits). Default: first evaluation split."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the metrics to this JSON file."),
    seed: int | None = typer.Option(None, "--seed", help="Seed for level sampling and actions. Default: the run's."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML applied over the checkpoint's config."),
    cost_sweep: bool = typer.Option(
        False,
        "--cost-sweep",
        help="Coordinators: also report the reward at expert-query cost weights 0, 0.2, ..., 1 and the area under it.",
    ),
    overrides: list[str] | None = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
) -> None:
    """Evaluate a checkpoint over N complete episodes and report the returns."""
    from duo_ai.coordination.sweep import COST_WEIGHTS
    from duo_ai.training import evaluate_checkpoint

    try:
        metrics = evaluate_checkpoint(
            str(checkpoint),
            split,
            episodes,
            temperature,
            str(config) if config else None,
            overrides or [],
            seed,
            cost_weights=list(COST_WEIGHTS) if cost_sweep else None,
        )
    except DuoAIError as e:
        fail(str(e))
    table = Table(title=f"{checkpoint} on {metrics['env']} / {metrics['split']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        if key in ("episode_returns", "checkpoint", "split", "env", "cost_sweep"):
            continue
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    out.print(table)
    if "cost_sweep" in metrics:
        sweep = Table(title=f"reward vs expert-query cost weight (AUC {metrics['auc']:.4g})")
        for column in ("cost weight", "reward mean", "reward std"):
            sweep.add_column(column, justify="right")
        for row in metrics["cost_sweep"]:
            sweep.add_row(f"{row['cost_weight']:g}", f"{row['reward_mean']:.4g}", f"{row['reward_std']:.4g}")
        out.print(sweep)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(metrics, indent=2))


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
