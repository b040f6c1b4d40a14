"""`duo-ai`: train and evaluate PPO agents and coordinators on Procgen and MiniGrid.

A thin shell: each command reads its options and calls one function of `duo_ai`, which checks
everything before any work and raises a `DuoAIError` for what the user can fix. How a command ends
(one `error:` line and its exit code, an interrupt, a crash) is `group.DuoGroup`'s, the same for
every command. The commands that look at results are in `reports.py`, the options several
commands share in `options.py`; their help texts are the CLI reference (docs/hooks.py generates it).
"""

from __future__ import annotations

import shlex
import signal
import sys
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from duo_ai import __version__
from duo_ai.core.errors import ConfigError
from duo_ai_cli import reports
from duo_ai_cli.group import CRASH_LOG, DuoGroup, err, sigterm_as_interrupt
from duo_ai_cli.options import (
    CONFIG_HELP,
    EVAL_SEED_HELP,
    OVERRIDES_HELP,
    complete_config,
    complete_study,
    config_option,
    import_modules,
    import_option,
    out,
    split_option,
    temperature_option,
)

app = typer.Typer(
    cls=DuoGroup,
    help="Train and evaluate PPO agents, and novice/expert coordinators, on Procgen and MiniGrid.",
    no_args_is_help=True,
    # `duo-ai --install-completion` / `--show-completion`: see docs/getting-started.md.
    add_completion=True,
    pretty_exceptions_enable=False,
    # Inherited by every command: `duo-ai train -h` as well as `--help`.
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        out.print(f"duo-ai {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print duo-ai's version and exit."
    ),
) -> None:
    """Options before the command (`duo-ai --version`)."""
    from duo_ai.plugins import load_entry_points

    load_entry_points(warn=lambda message: err.print(f"warning: {message}", highlight=False, markup=False))


@app.command()
def train(
    ctx: typer.Context,
    overrides: list[str] | None = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
    config: list[Path] | None = config_option(CONFIG_HELP + " Without it: the CPU quickstart."),
    resume: Path | None = typer.Option(
        None, "--resume", help="Continue the run in this folder from its last.ckpt (overrides apply on top)."
    ),
    seeds: str | None = typer.Option(
        None, "--seeds", help="Comma-separated seeds, e.g. 1,2,3: one run per seed, named <name>_s<seed>, in turn."
    ),
    print_commands: bool = typer.Option(
        False, "--print-commands", help="With --seeds: print each seed's duo-ai train command instead of running it."
    ),
    progress: bool = typer.Option(True, help="Show the live progress bar (on a terminal)."),
    modules: list[str] | None = import_option(),
) -> None:
    """Train a policy. Writes experiments/<name>/: config.yaml, train.log, progress.csv, eval.csv, tb/, *.ckpt."""
    from duo_ai.train_job import runs_to_train, seed_commands
    from duo_ai.training import Trainer

    signal.signal(signal.SIGTERM, sigterm_as_interrupt)
    import_modules(modules)
    if print_commands:
        for line in seed_commands(config, overrides or [], seeds, resume, progress, modules or []):
            out.print(line, highlight=False, soft_wrap=True)
        return
    configs = runs_to_train(
        config, overrides or [], resume, seeds, log=lambda change: err.print(change, highlight=False, markup=False)
    )
    for cfg in configs:
        ctx.meta[CRASH_LOG] = Path(cfg.experiments_dir) / cfg.name / "train.log"  # a crash names it
        with Trainer(cfg, resume=resume is not None, show_progress=progress) as trainer:
            trainer.run()


@app.command("eval")
def evaluate(
    checkpoint: Path = typer.Option(
        ..., "--checkpoint", help="A .ckpt written by duo-ai train, or a run folder (its last.ckpt)."
    ),
    temperature: float | None = temperature_option(),
    episodes: int | None = typer.Option(
        None, "--episodes", "-n", help="Number of complete episodes. Default: evaluation.num_episodes."
    ),
    split: str | None = split_option(),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the metrics to this JSON file."),
    seed: int | None = typer.Option(None, "--seed", help=EVAL_SEED_HELP),
    config: list[Path] | None = config_option("YAML applied over the checkpoint's config (as train's -c)."),
    cost_sweep: bool = typer.Option(
        False,
        "--cost-sweep",
        help="Coordinators: also report the reward at expert-query cost weights 0, 0.2, ..., 1 and the area under it.",
    ),
    cost_weight: float | None = typer.Option(
        None,
        "--cost-weight",
        help="Coordinators: charge expert calls at this weight (coordination.expert_query_cost_weight); "
        "a calibrated baseline is re-calibrated for it from its stored validation episodes.",
    ),
    overrides: list[str] | None = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
    modules: list[str] | None = import_option(),
) -> None:
    """Evaluate a checkpoint over N complete episodes and report the returns."""
    from duo_ai.coordination.sweep import COST_WEIGHTS
    from duo_ai.core.files import atomic_write_text, check_output_file, json_lines
    from duo_ai.eval_job import evaluate_checkpoint, metrics_tables

    import_modules(modules)
    if json_out is not None:  # checked before evaluating, so the results have somewhere to go
        check_output_file(json_out, "--json file")
    cost = [] if cost_weight is None else [f"coordination.expert_query_cost_weight={cost_weight}"]
    metrics = evaluate_checkpoint(
        str(checkpoint), split, episodes, temperature, config or None, [*(overrides or []), *cost], seed,
        cost_weights=list(COST_WEIGHTS) if cost_sweep else None,
        log=lambda message: err.print(message, highlight=False),
    )  # fmt: skip
    for table in metrics_tables(checkpoint, metrics):
        out.print(table)
    if json_out is not None:
        atomic_write_text(json_out, json_lines(metrics))


@app.command()
def export(
    checkpoint: Path = typer.Argument(..., help="A .ckpt written by duo-ai train, or a run folder (its last.ckpt)."),
    output: Path = typer.Option(..., "--output", "-o", help="The new, smaller .ckpt (must not exist)."),
    agents: bool = typer.Option(
        True,
        "--agents/--without-agents",
        help="Coordinators: keep the embedded novice and expert (a few MB). Without them, evaluate with "
        "train_novice=<novice.ckpt> train_expert=<expert.ckpt>.",
    ),
) -> None:
    """Write a checkpoint cut down to what evaluating it needs (weights, configs, calibration, agents).

    The optimizer, the games' states and the random streams, which only --resume needs, are left
    out: the file evaluates, plays videos and initialises policy.load_path, but does not resume.
    """
    from duo_ai.export import export_checkpoint

    report = export_checkpoint(checkpoint, output, with_agents=agents)
    out.print(
        f"wrote {output}: {report['target_bytes'] / 1e6:.2f} MB (from {report['source_bytes'] / 1e6:.2f} MB); "
        f"left out: {', '.join(report['left_out']) or 'nothing'}",
        highlight=False,
    )
    if report["needs_agents"]:
        out.print(
            f"evaluate it with: duo-ai eval --checkpoint {output} "
            "train_novice=<novice.ckpt> train_expert=<expert.ckpt>",
            highlight=False,
        )


@app.command()
def bench(
    overrides: list[str] | None = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
    config: list[Path] | None = config_option(
        "YAML config (a file or a shipped config's name) to measure (repeatable; default: built-in)."
    ),
    game: str = typer.Option("coinrun", "--game", help="Procgen game."),
    num_envs: int = typer.Option(64, "--num-envs", help="Parallel environments."),
    num_steps: int = typer.Option(256, "--num-steps", help="Rollout steps per env per iteration."),
    num_minibatches: int = typer.Option(8, "--num-minibatches", help="Minibatches per epoch."),
    epochs: int = typer.Option(3, "--epochs", help="Update epochs per iteration."),
    iterations: int = typer.Option(3, "--iterations", help="Timed training iterations per loop."),
    warmup: int = typer.Option(1, "--warmup", help="Untimed iterations before each timed loop."),
    baseline: bool = typer.Option(True, help="Also time the loop with precision=fp32, compile=false."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the report to this JSON file."),
) -> None:
    """Measure training speed: env alone, compute bound, training loop, and the fp32 baseline loop.

    The defaults are the Procgen recipe's shape (64 envs x 256 steps, 8 minibatches, 3 epochs),
    a few minutes per loop on a CPU; `--num-envs 8 --num-steps 32 --iterations 1` runs in seconds.
    Under torchrun the envs are split over the processes and rank 0 reports total and per-process SPS.
    """
    from duo_ai.bench import Workload, bench_table, run_bench
    from duo_ai.core.files import atomic_write_text, check_output_file, json_text

    workload = Workload(game, num_envs, num_steps, num_minibatches, epochs, iterations, warmup)
    if json_out is not None:
        check_output_file(json_out, "--json file")
    report = run_bench(workload, config or None, overrides or [], baseline, log=lambda m: err.print(m))
    if report is None:  # a data-parallel bench's rank > 0: rank 0 reports
        return
    out.print(bench_table(report))
    if json_out is not None:
        atomic_write_text(json_out, json_text(report, indent=2))


# The commands that look at results (reports.py), at their place in `duo-ai --help`.
app.command()(reports.plot)
app.command()(reports.video)
app.command("ask-map")(reports.ask_map)
app.command()(reports.compare)
app.command("study-report")(reports.study_report)
app.command("benchmark-report")(reports.benchmark_report)


@app.command()
def study(
    study_file: str = typer.Argument(
        ...,
        help="A study file (YAML), or the name of a shipped one (`duo-ai configs` lists them), e.g. procgen_smoke.",
        autocompletion=complete_study,
    ),
    overrides: list[str] | None = typer.Argument(
        None,
        help="Study overrides as dotted key=value pairs, e.g. weight=0.5 evaluation.auc_episodes=100.",
        show_default=False,
    ),
    out_dir: str | None = typer.Option(
        None, "--out", help="The study's folder (study key out; default experiments/coordination)."
    ),
    jobs: str | None = typer.Option(
        None, "--jobs", help="Run up to N trainings and evaluations at once, each logging to OUT/logs/ (key jobs)."
    ),
    launcher: str | None = typer.Option(
        None,
        "--launcher",
        help="Where the jobs run: local (subprocesses here, one GPU each with --jobs N on N GPUs) or slurm "
        "(Slurm jobs through submitit, sized by the study's launcher: section) (key launcher.name).",
    ),
    gate_only: bool = typer.Option(
        False, "--gate-only", help="Stop after the gate, which prints where always-novice and always-expert break even."
    ),
    modules: list[str] | None = import_option(),
) -> None:
    """Run a coordination study end to end: agents, gate, baselines, PPO per cost weight, paired evaluations, reports.

    Finished runs and evaluations are reused and stopped runs resume, so a rerun only does what is
    missing. OUT/study.yaml records the study as it ran; OUT/table.json is its table.
    """
    from duo_ai.study.protocol import run_study
    from duo_ai.study.schema import load_study

    signal.signal(signal.SIGTERM, sigterm_as_interrupt)
    import_modules(modules)
    extra = [*([] if out_dir is None else [f"out={out_dir}"]), *([] if jobs is None else [f"jobs={jobs}"])]
    extra += [] if launcher is None else [f"launcher.name={launcher}"]
    imports = [arg for module in modules or [] for arg in ("--import", module)]
    command = [
        "duo-ai",
        "study",
        study_file,
        *(overrides or []),
        *extra,
        *(["--gate-only"] if gate_only else []),
        *imports,
    ]
    run_study(load_study(study_file, [*(overrides or []), *extra]), gate_only, shlex.join(command), imports)


@app.command("configs")
def list_configs(
    name: str | None = typer.Argument(
        None,
        help="A shipped config or study file to print, e.g. procgen_agent; without it, list them all.",
        autocompletion=lambda incomplete: complete_config(incomplete) + complete_study(incomplete),
        show_default=False,
    ),
) -> None:
    """List the configs and study files shipped with duo-ai, or print one to copy and edit.

    `-c NAME` and `duo-ai study NAME` find these by name from any folder; a path to a file of
    your own works too, and its `defaults:` may name a shipped config to build on."""
    from duo_ai.core.config_files import CONFIGS, STUDIES, shipped_catalogue, shipped_config

    if name is not None:
        path = shipped_config(name) or shipped_config(name, STUDIES)
        if path is None:
            raise ConfigError(f"no shipped config or study file is named {name!r}; `duo-ai configs` lists them")
        sys.stdout.write(path.read_text())
        return
    table = Table(box=None, header_style="bold")
    table.add_column("name", no_wrap=True)
    table.add_column("kind")
    table.add_column("what")
    for shipped, kind, what in shipped_catalogue():
        table.add_row(shipped, kind, escape(what))
    out.print(table)
    out.print(f"[dim]in {CONFIGS}; print one with `duo-ai configs NAME`[/]", highlight=False)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
