"""The `duo-ai` commands that look at results: `plot`, `video`, `ask-map`, `compare`, `study-report`
and `benchmark-report`. Each reads its options and calls one function of `duo_ai.reports` or
`duo_ai.study`; `main.py` registers them."""

from __future__ import annotations

from pathlib import Path

import typer

from duo_ai_cli.group import err
from duo_ai_cli.options import OVERRIDES_HELP, import_modules, import_option, out, split_option, temperature_option


def plot(
    runs: list[Path] = typer.Argument(..., help="Run folders written by duo-ai train (seeds of one run are pooled)."),
    output: Path = typer.Option(..., "--output", "-o", help="Image file to write: .png or .svg."),
    metric: str = typer.Option(
        "return",
        "--metric",
        "-m",
        help="What to plot: return (training and evaluation returns), or a column of progress.csv or eval.csv.",
    ),
    aggregate: str = typer.Option("mean", "--agg", help="Pool seeds by mean or iqm (interquartile mean)."),
) -> None:
    """Draw learning curves (a metric against environment steps) of one or more runs."""
    from duo_ai.reports.plot import plot_runs

    drawn = plot_runs(runs, output, metric, aggregate)
    lines = "; ".join(drawn["lines"])
    counts = f"{drawn['runs']} run(s) in {drawn['groups']} group(s)"
    out.print(f"wrote {drawn['output']}: {counts}; lines: {lines}", highlight=False, soft_wrap=True)


def video(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A .ckpt written by duo-ai train."),
    output: Path = typer.Option(
        ..., "--output", "-o", help="File to write: .mp4 (video), .gif (for slides) or .png (a strip of frames)."
    ),
    episodes: int = typer.Option(1, "--episodes", "-n", help="Complete episodes to record, one after the other."),
    temperature: float | None = temperature_option(),
    split: str | None = split_option(),
    seed: int | None = typer.Option(
        None,
        "--seed",
        help="Seed of the episodes and actions: the first episodes duo-ai eval plays with this --seed. "
        "Default: the run's.",
    ),
    scale: int = typer.Option(4, "--scale", help="Upscaling of the 64x64 frames (nearest neighbour)."),
    fps: float = typer.Option(15.0, "--fps", help="Frames per second of the MP4 or GIF."),
    frames: int = typer.Option(8, "--frames", help="PNG strip: frames evenly spaced over the first episode."),
    overrides: list[str] | None = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
) -> None:
    """Record full episodes of a checkpoint's agent; a coordinator's expert steps get an orange border."""
    from duo_ai.reports.video import record_checkpoint

    made = record_checkpoint(
        str(checkpoint), output, split, temperature, episodes, seed, overrides or [], scale, fps, frames,
        log=lambda message: err.print(message, highlight=False),
    )  # fmt: skip
    returns = ", ".join(f"{r:g}" for r in made["episode_returns"])
    expert = "" if made["expert_fraction"] is None else f"; expert acted on {made['expert_fraction']:.1%} of steps"
    out.print(
        f"wrote {made['output']}: {made['frames']} frames; {made['env']} / {made['split']}, temperature "
        f"{made['temperature']:g}; episode lengths {made['episode_lengths']}, returns {returns}{expert}",
        highlight=False,
        soft_wrap=True,
    )


def ask_map(
    checkpoint: Path = typer.Option(
        ..., "--checkpoint", help="A MiniGrid coordinator's .ckpt (duo-ai train or export)."
    ),
    output: Path = typer.Option(..., "--output", "-o", help="PNG to draw; the numbers go to the same name with .json."),
    episodes: int = typer.Option(500, "--episodes", "-n", help="Test episodes for each of the two passes."),
    split: str = typer.Option("test", "--split", help="Level split (train, test, or one from env.splits)."),
    seed: int | None = typer.Option(
        None,
        "--seed",
        help="Seed of the episodes: those duo-ai eval plays with this --seed, -n and evaluation.num_envs. "
        "Default: the run's.",
    ),
    temperature: float | None = typer.Option(
        None, "--temperature", "-t", help="The coordinator's sampling temperature. Default: evaluation.temperature."
    ),
    overrides: list[str] | None = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
    modules: list[str] | None = import_option(),
) -> None:
    """Draw where a MiniGrid coordinator asks for the expert (per grid cell) beside where the novice alone fails."""
    from duo_ai.reports.ask_map import ask_map as draw_ask_map

    import_modules(modules)
    made = draw_ask_map(
        str(checkpoint), output, split, episodes, seed, temperature, overrides or [],
        log=lambda message: err.print(message, highlight=False),
    )  # fmt: skip
    out.print(
        f"wrote {made['output']} (+ .json): asks on {made['ask_fraction']:.1%} of steps; "
        f"{made['asks_on_failures']:.1%} of asks and {made['visits_on_failures']:.1%} of steps are on a cell where "
        f"the novice alone failed ({made['novice_failure_rate']:.1%} of its episodes failed)",
        highlight=False,
        soft_wrap=True,
    )


def compare(
    runs: list[Path] = typer.Argument(..., help="Run folders written by duo-ai train (seeds of one run are pooled)."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the table to this JSON file."),
    split: str | None = typer.Option(None, "--split", help="Only this evaluation split. Default: every split."),
    aggregate: str = typer.Option("mean", "--agg", help="Pool seeds by mean or iqm (interquartile mean)."),
) -> None:
    """Compare final evaluation returns of runs, pooling seeds with a 95% interval."""
    from duo_ai.reports.compare import compare_runs, terminal_table

    out.print(terminal_table(compare_runs(runs, split, aggregate, json_out)))


WEIGHTS_HELP = (
    "The study's cost weights, e.g. 0,0.2,0.4,0.6,0.8,1; each method needs them all. "
    "Default: every weight some method was evaluated at."
)


def study_report(
    evals: Path = typer.Argument(..., help="Folder of a study's evaluations: <method>/w<weight>.json."),
    weight: float = typer.Option(..., "--weight", "-w", help="The study's expert-query cost weight, e.g. 0.4."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder to write table.json and reward_vs_cost.png/.svg."),
    root: Path | None = typer.Option(
        None, "--root", help="Folder that table.json's checkpoint paths are relative to. Default: the output folder."
    ),
    weights: str | None = typer.Option(None, "--weights", help=WEIGHTS_HELP),
) -> None:
    """Compare a coordination study's methods on paired test episodes: table, AUC intervals, figure."""
    from duo_ai.study.evals import parse_weights
    from duo_ai.study.report import study_report as make_report
    from duo_ai.study.report import terminal_tables

    table = make_report(evals, weight, output, root, None if weights is None else parse_weights(weights))
    for report in terminal_tables(table):
        out.print(report)
    out.print(f"wrote {', '.join(table['outputs'])}", highlight=False, soft_wrap=True)


def benchmark_report(
    studies: list[Path] = typer.Argument(
        ...,
        help="Study folders written by duo-ai study (study.yaml, table.json, report/table.json), "
        "one per test environment and setting.",
        show_default=False,
    ),
    output: Path = typer.Option(
        ...,
        "--output",
        "-o",
        help="Folder to write benchmark.json, benchmark.md and auc_ratio.png to (made if its parent exists); "
        "not a study folder or inside one.",
    ),
) -> None:
    """Put several coordination studies in one table: each method's AUC, its ratio to the skyline PPO's, and wins.

    Per test environment (the study's game) and setting (skyline or realistic): every method's AUC of
    reward with costs over the cost weights with its 95% bootstrap interval (from report_auc/table.json
    where the study has one, else report/table.json), its reward at the study's weight (table.json),
    and its AUC divided by the AUC of ppo in the skyline study of the same environment. Each
    environment and setting is won by the method with the highest AUC (ties all win; PPO competes as
    ppo, its first training seed).

    Example: duo-ai benchmark-report results/minigrid_distshift runs/distshift_realistic -o benchmark
    """
    from duo_ai.reports.benchmark import benchmark_report as make_report
    from duo_ai.reports.benchmark import terminal_tables

    bench = make_report(studies, output)
    for table in terminal_tables(bench):
        out.print(table)
    out.print(f"wrote {', '.join(bench['outputs'])}", highlight=False, soft_wrap=True)
