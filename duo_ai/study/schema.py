"""A study file: what a coordination study trains and evaluates, read and checked before any work.

Layers, later ones winning: the `Study` dataclass defaults < the study file (after its own
`defaults: [...]` bases, found beside it, as for run configs) < dotted `key=value` overrides
(`weight=0.5`, `evaluation.auc_episodes=100`, `agents.novice.checkpoint=...`). Every problem is a
one-line `ConfigError` naming the study key.

A study file, and each run config it names, is a path (relative to the current folder) or the name
of a shipped one, as for `duo-ai train -c`: `procgen_smoke`, `config: procgen_agent`.

Longer than ~400 lines for one reason: the schema is one tree of dataclasses that maps one-to-one
onto a study file, read here in the file's order, with the checks across its sections beside it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from duo_ai.config import MAX_EPISODES, PLAIN_NAME, is_plain_name
from duo_ai.coordination.config import MAX_COST_WEIGHT
from duo_ai.core.checks import INT32_MAX, Rule, check_config, checked
from duo_ai.core.compute import PRECISIONS
from duo_ai.core.config_files import STUDIES, describe, find_config_file, load_yaml_layers, parse_overrides
from duo_ai.core.errors import ConfigError
from duo_ai.core.files import check_writable

SUITES = ("procgen", "minigrid")
# skyline: coordinators train and are selected on the test environment with the real pair (what the
# benchmark's PPO configs do); realistic: on the train environment with a simulated pair (a weakened
# novice as the novice, the novice as the expert), nothing built on the test environment before the
# final evaluations (YRC-Bench's `YRC/core/environment.py`, the yrc package's "setting").
SETTINGS = ("skyline", "realistic")
# The split every method is selected on, per setting: PPO's pick is its best_<split>.ckpt.
SELECTION_SPLITS = {"skyline": "val_true", "realistic": "val_sim"}
PPO_STARTS = ("random", "uniform")
LAUNCHERS = ("local", "slurm")
CLUSTERS = ("slurm", "local")
# The gate compares these two; every `always_*` method is evaluated once and re-priced per weight.
GATE = ("always_novice", "always_expert")
ALWAYS = "always_"
# Folders of the study that are not a method's run: a method of this name would share them.
RESERVED = ("novice", "expert", "sim_novice", "ppo", "logs", "launcher")
RESERVED_PREFIXES = ("ppo_", "evals", "report")


def weight_name(weight: float) -> str:
    """A cost weight as runs and files are named (ppo_w0.5, w0.5.json): 0.50 and 0.5 are one weight."""
    return f"{weight:g}"


@dataclass
class AgentSpec:
    """One agent of the pair: trained with `duo-ai train -c config` (steps and overrides on top), or given."""

    # The agent in words, for the stage line (e.g. "coinrun easy, 200 levels").
    about: str = ""
    config: str = ""
    # algorithm.total_timesteps; null = the config's own.
    steps: int | None = checked(None, ge=1)
    overrides: list[str] = field(default_factory=list)
    # An existing checkpoint to use instead of training this agent.
    checkpoint: str | None = None
    # Start from the final weights of an agent trained before it (policy.load_path), e.g. an expert
    # fine-tuned from the novice on a layout too sparse to learn from scratch in minutes; null = afresh.
    init: str | None = None


@dataclass
class Agents:
    """The novice and the expert, and the realistic setting's sim novice; `overrides` apply to all
    (before each one's own)."""

    overrides: list[str] = field(default_factory=list)
    novice: AgentSpec = field(default_factory=AgentSpec)
    expert: AgentSpec = field(default_factory=AgentSpec)
    # The realistic setting's weakened novice: on the train environment it plays the novice while
    # the novice plays the expert. Trained like the novice with fewer steps, on the train environment.
    sim_novice: AgentSpec = field(default_factory=AgentSpec)


@dataclass
class Coordination:
    """What every coordination run (baselines and PPO) shares besides the agents."""

    # coordination.agent_temperature: how the novice and the expert act (1 samples, 0 = greedy);
    # null = the configs' own.
    agent_temperature: float | None = checked(None, ge=0)
    # The cost unit (coordination.base_penalty): the test expert's reward per step, one fixed number
    # per pair, as the benchmark's table; null = measured by the gate's first run on the test split
    # (skyline only: a realistic study plays nothing on the test environment before its end).
    base_penalty: float | None = checked(None, gt=0)
    overrides: list[str] = field(default_factory=list)


@dataclass
class Method:
    """A baseline coordinator: its run config, its candidate grid, and its own settings."""

    config: str = ""
    # What calibration chooses among (e.g. policy.candidates=[0,0.5,1]); set per study.
    grid: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)


@dataclass
class PPO:
    """The learned coordinator, one per cost weight."""

    config: str = ""
    overrides: list[str] = field(default_factory=list)
    # random: start at the rate of asking that random's calibration chose at its weight (in
    # [0.001, 0.999]); uniform: at 1/2, as the benchmark does.
    start: str = checked("uniform", choices=PPO_STARTS)
    # Training seeds: one PPO coordinator per weight and seed. The first seed's runs are ppo_w<W>
    # (method `ppo`), each other seed's ppo_w<W>_s<S> (method `ppo_s<S>`), each reported apart.
    seeds: list[int] = checked(factory=lambda: [1], nonempty=True, each=Rule(ge=0))

    def run_name(self, weight: str, seed: int) -> str:
        return f"ppo_w{weight}" if seed == self.seeds[0] else f"ppo_w{weight}_s{seed}"

    def method_name(self, seed: int) -> str:
        return "ppo" if seed == self.seeds[0] else f"ppo_s{seed}"


@dataclass
class Evaluation:
    """The paired test evaluations: every method on the same levels, seed and envs."""

    # Test episodes per method at the study's weight (and at every weight without auc_episodes).
    episodes: int = checked(1000, ge=1, le=MAX_EPISODES)
    # Test episodes per method at every grid weight, for the AUC; null = `episodes` in one pass.
    auc_episodes: int | None = checked(None, ge=1, le=MAX_EPISODES)
    # Fresh test episodes per method at the study's weight on confirm_seed; 0 = no confirmation.
    confirm_episodes: int = checked(0, ge=0, le=MAX_EPISODES)
    # The bounds of `duo-ai eval --episodes/--seed`, which every evaluation job runs.
    seed: int = checked(1, ge=0, le=INT32_MAX)
    confirm_seed: int = checked(4, ge=0, le=INT32_MAX)
    num_envs: int = checked(50, ge=1)


@dataclass
class Compute:
    """How every run computes (`duo-ai train` / `eval` keys of the same names)."""

    # Torch CPU threads per run; 0 = the cores divided among the jobs that run at once (jobs > 1),
    # all of them (jobs 1), or launcher.cpus_per_task (launcher slurm).
    num_threads: int = checked(0, ge=0)
    # null = each run's own (auto).
    precision: str | None = checked(None, choices=PRECISIONS)


@dataclass
class Launcher:
    """Where the study's jobs run: subprocesses of the study (`local`), or Slurm jobs submitted
    through submitit (`slurm`). The sizes below are one job's (`slurm` only)."""

    # local: `duo-ai` subprocesses here, one GPU each when several run at once on a multi-GPU box;
    # slurm: each job a Slurm job (a stage's jobs one job array), submitted through submitit.
    name: str = checked("local", choices=LAUNCHERS)
    # submitit's AutoExecutor(cluster=...): slurm, or local to run the same submission path (pickled
    # job, its own process and log) on this machine.
    cluster: str = checked("slurm", choices=CLUSTERS)
    # The Slurm partition; null = the cluster's default.
    partition: str | None = checked(None, test=lambda v: bool(v.strip()), allowed="a partition name, or null")
    # Wall-clock limit of each job (minutes); a training still running then saves last.ckpt, and the
    # job is requeued and resumes from it.
    time_min: int = checked(240, ge=1)
    gpus_per_job: int = checked(0, ge=0)
    # Also each job's torch CPU threads when compute.num_threads is 0.
    cpus_per_task: int = checked(4, ge=1)
    mem_gb: float = checked(16, gt=0)
    # Shell lines each job runs first (module load ..., source .venv/bin/activate).
    setup: list[str] = field(default_factory=list)
    # Further #SBATCH options by name, e.g. {account: myproject, qos: normal, constraint: a100}.
    sbatch: dict[str, str] = field(default_factory=dict)


@dataclass
class Study:
    """A whole coordination study. Runs and evaluations go to `out`."""

    suite: str = checked("procgen", choices=SUITES)
    # env.task of every run (an agent's overrides may set its own): the test environment.
    game: str = checked("", test=bool, allowed="a game or task name, e.g. coinrun")
    setting: str = checked("skyline", choices=SETTINGS)
    # The train environment (the novice's own task): where a realistic study's coordinators train,
    # calibrate and are selected (its `train` and `val_sim` splits). Only read by setting realistic.
    train_game: str = ""
    out: str = checked("experiments/coordination", test=bool, allowed="a folder path")
    # Independent trainings and evaluations run at once (each logging to OUT/logs/); with launcher
    # slurm, submitted at once (queued or running).
    jobs: int = checked(1, ge=1)
    launcher: Launcher = field(default_factory=Launcher)
    compute: Compute = field(default_factory=Compute)
    agents: Agents = field(default_factory=Agents)
    coordination: Coordination = field(default_factory=Coordination)
    # The cost weights that get a PPO coordinator and an evaluation of every method (the AUC's grid).
    weights: list[float] = checked(
        factory=lambda: [0.0, 0.2, 0.4, 0.6, 0.8, 1.0], nonempty=True, each=Rule(ge=0, le=MAX_COST_WEIGHT)
    )
    # The study's weight: its table. Off the grid only with evaluation.auc_episodes.
    weight: float = checked(0.4, ge=0, le=MAX_COST_WEIGHT)
    # PPO coordinators trained only to check that PPO responds to the cost (their ask rate is printed).
    sanity_weights: list[float] = checked(factory=lambda: [0.0, 2.0], each=Rule(ge=0, le=MAX_COST_WEIGHT))
    evaluation: Evaluation = field(default_factory=Evaluation)
    # Settings of every calibrated baseline's calibration (every method but the always-agents).
    calibration: list[str] = field(default_factory=list)
    # The baselines a study may run, by name (the name of its run folder and evaluation folder).
    methods: dict[str, Method] = field(default_factory=dict)
    # The baselines this study runs, in order.
    baselines: list[str] = field(default_factory=lambda: [*GATE, "random", "logit"])
    ppo: PPO = field(default_factory=PPO)

    @property
    def selection_split(self) -> str:
        """Where every method is calibrated and PPO is picked: val_true (skyline) or val_sim (realistic)."""
        return SELECTION_SPLITS[self.setting]

    @property
    def roles(self) -> tuple[str, ...]:
        """The agents this study uses: the sim novice only in the realistic setting."""
        return ("novice", "expert", "sim_novice") if self.setting == "realistic" else ("novice", "expert")

    @property
    def calibrated(self) -> list[str]:
        """The baselines that calibrate (and are evaluated at every weight)."""
        return [name for name in self.baselines if not name.startswith(ALWAYS)]

    @property
    def ppo_weights(self) -> list[str]:
        """The PPO coordinators' weights: the study's first (its result comes first), the grid, the sanity ones."""
        names: list[str] = []
        for w in (self.weight, *self.weights, *self.sanity_weights):
            if weight_name(w) not in names:
                names.append(weight_name(w))
        return names

    @property
    def auc_episodes(self) -> int:
        """Test episodes per method at the grid's weights: one weight has no AUC, so the study's episodes."""
        if len(self.weights) == 1 or self.evaluation.auc_episodes is None:
            return self.evaluation.episodes
        return self.evaluation.auc_episodes


def find_study_file(name: str) -> Path:
    """A study file given as a path, or as the name of a shipped one (`procgen_smoke`)."""
    return find_config_file(name, STUDIES, "study file")


def load_study(name: str, overrides: list[str] | tuple[str, ...] = ()) -> Study:
    """The study of file `name` with `overrides` applied, checked (see `check_study`)."""
    layers: list[Any] = [OmegaConf.structured(Study)]
    layers += load_yaml_layers(find_study_file(name), STUDIES)
    # `key=` reads as null, which for the launcher's partition would quietly mean the cluster's default.
    empty = [o for o in overrides if o.startswith("launcher.") and "=" in o and not o.split("=", 1)[1].strip()]
    if empty:
        raise ConfigError(
            f"override {empty[0]!r} has no value; give one (e.g. launcher.partition=gpu), or null for the default"
        )
    layers.append(parse_overrides(list(overrides)))
    try:
        study = OmegaConf.to_object(OmegaConf.merge(*layers))
    except ConfigKeyError as e:
        key = getattr(e, "full_key", None) or getattr(e, "key", None)
        raise ConfigError(
            f"unknown study key {key!r}; check the spelling against the Study fields in duo_ai/study/schema.py"
        ) from None
    except OmegaConfBaseException as e:
        raise ConfigError(describe(e).replace("config key", "study key")) from None
    check_study(study)
    return study


def check_study(study: Study) -> None:
    """Every check that needs no run: values, names, files, and the rules that span fields."""
    check_config(study)
    names = [weight_name(w) for w in study.weights]
    if len(set(names)) != len(names):
        raise ConfigError(f"weights lists a weight twice ({' '.join(names)}); give each cost weight once")
    seeds = study.ppo.seeds
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"ppo.seeds lists a seed twice ({seeds}); give each training seed once")
    if study.auc_episodes == study.evaluation.episodes and weight_name(study.weight) not in names:
        raise ConfigError(
            f"the study's weight {weight_name(study.weight)} is not among the cost weights ({' '.join(names)}); "
            "set weight to one of them, add it to weights, or evaluate the grid apart with evaluation.auc_episodes"
        )
    e = study.evaluation
    if e.confirm_seed == e.seed:
        raise ConfigError(
            f"evaluation.confirm_seed must differ from evaluation.seed={e.seed} (the study's own episodes, on "
            f"which methods are compared), got {e.confirm_seed}; pick another seed, e.g. {e.seed + 3}"
        )
    check_baselines(study)
    check_setting(study)
    overrides = [
        ("agents.overrides", study.agents.overrides),
        ("coordination.overrides", study.coordination.overrides),
        ("calibration", study.calibration),
        ("ppo.overrides", study.ppo.overrides),
    ]
    for index, role in enumerate(study.roles):
        agent = getattr(study.agents, role)
        if agent.init is not None and agent.init not in study.roles[:index]:
            raise ConfigError(
                f"agents.{role}.init={agent.init!r}: an agent starts from one made before it; choose from "
                f"{', '.join(study.roles[:index]) or 'none'} (in the order {', '.join(study.roles)}), or null"
            )
        overrides.append((f"agents.{role}.overrides", agent.overrides))
        if agent.checkpoint is not None:
            if not Path(agent.checkpoint).is_file():
                raise ConfigError(
                    f"agents.{role}.checkpoint {agent.checkpoint} not found; pass an existing .ckpt, "
                    f"or leave it null to train the {role}"
                )
        else:
            check_config_file(f"agents.{role}.config", agent.config)
    for name in study.baselines:
        method = study.methods[name]
        check_config_file(f"methods.{name}.config", method.config)
        overrides += [(f"methods.{name}.grid", method.grid), (f"methods.{name}.overrides", method.overrides)]
    check_config_file("ppo.config", study.ppo.config)
    for key, values in overrides:
        try:
            parse_overrides(values)
        except ConfigError as error:
            raise ConfigError(f"{key}: {error}") from None
    check_writable(study.out, "out folder")


def check_setting(study: Study) -> None:
    """The realistic setting's own needs: a MiniGrid pair, its train environment, a sim novice, a given cost unit."""
    if study.setting != "realistic":
        return
    if study.suite != "minigrid":
        raise ConfigError(
            f"setting realistic is built for suite minigrid (a train and a test layout), not {study.suite}; "
            "use setting skyline"
        )
    if not study.train_game:
        raise ConfigError(
            "setting realistic trains and selects coordinators on the train environment: set train_game to the "
            "novice's own task, e.g. train_game=MiniGrid-DistShift1-v0"
        )
    if study.train_game == study.game:
        raise ConfigError(
            f"train_game and game are both {study.game}; the realistic setting needs the novice's train "
            "environment to differ from the test environment (game)"
        )
    sim = study.agents.sim_novice
    if not sim.config and sim.checkpoint is None:
        raise ConfigError(
            "setting realistic needs agents.sim_novice, the weakened novice that plays the novice on the train "
            "environment: set agents.sim_novice.config and .steps, or agents.sim_novice.checkpoint"
        )
    if study.coordination.base_penalty is None:
        raise ConfigError(
            "setting realistic never plays the test environment before its final evaluations, so its cost unit "
            "must be given: set coordination.base_penalty (the test expert's reward per step; the pair's skyline "
            "study measures it: base_penalty in its table.json)"
        )


def check_baselines(study: Study) -> None:
    """Baselines name defined methods, once each, with the gate's always-agents and PPO's start source."""
    for name in study.methods:
        if not is_plain_name(name) or name in RESERVED or name.startswith(RESERVED_PREFIXES):
            raise ConfigError(
                f"methods.{name}: a method's name is its run folder: {PLAIN_NAME}, and not "
                f"{', '.join(RESERVED)} or starting with {', '.join(RESERVED_PREFIXES)}; rename it"
            )
    for name in study.baselines:
        if name not in study.methods:
            raise ConfigError(
                f"baselines names {name!r}, which is not a method of the study; pick from "
                f"{', '.join(study.methods) or 'none'}, or define methods.{name} (config, grid, overrides)"
            )
    if len(set(study.baselines)) != len(study.baselines):
        raise ConfigError(f"baselines names a method twice ({', '.join(study.baselines)}); list each once")
    missing = [name for name in GATE if name not in study.baselines]
    if missing:
        raise ConfigError(f"baselines must include {' and '.join(GATE)} (the gate compares them); add {missing[0]}")
    if study.ppo.start == "random" and "random" not in study.baselines:
        raise ConfigError(
            "ppo.start=random starts PPO at random's calibrated rate, but baselines has no 'random'; "
            "add random to baselines or set ppo.start=uniform"
        )


def check_config_file(key: str, path: str) -> None:
    """A run config named in the study is an existing file's path or a shipped config's name."""
    if not path:
        raise ConfigError(f"{key} is empty; give a YAML file's path or the name of a shipped config")
    try:
        found = find_config_file(path)
    except ConfigError as error:
        raise ConfigError(f"{key}: {error}") from None
    if not found.is_file():
        raise ConfigError(f"{key}: config file {path!r} is not a file; pass a YAML file or a shipped config's name")


def study_to_yaml(study: Study) -> str:
    return yaml.safe_dump(dataclasses.asdict(study), sort_keys=False)
