"""Everything a study checks before its first job (`check_before_any_job`), each problem one line:
every run's config resolves (keys, values, files, memory), every agent checkpoint it is given is an
agent of its game, what is already in its folder is what it would make now (`duo_ai.study.reuse`),
and nothing of the wrong kind sits where it writes."""

from __future__ import annotations

from pathlib import Path

from duo_ai.build import check_memory
from duo_ai.config import Config, load_config
from duo_ai.coordination.agents import game_of, read_agent_checkpoint
from duo_ai.core.checkpoint import load_checkpoint
from duo_ai.core.errors import ConfigError
from duo_ai.core.files import check_output_file, refuse_special
from duo_ai.envs import EnvConfig
from duo_ai.models.coordinator import is_coordinator_model
from duo_ai.study.plan import Plan
from duo_ai.study.reuse import agent_weights, check_agents, check_evaluation, check_run


def check_before_any_job(plan: Plan) -> None:
    """Every run's config loads (keys, values, files), every agent checkpoint given is an agent of
    the study's game, and every run or evaluation already in the folder is what the study would
    make now (`duo_ai.study.reuse`): all before any work, each problem one line."""
    placeholder = ["policy.model.expert_prob_init=0.5"] if plan.study.ppo.start == "random" else []
    derived = ("policy.model.expert_prob_init",) if placeholder else ()
    check_given_agents(plan)
    runs = [*plan.agent_runs(), *map(plan.baseline_run, plan.study.baselines)]
    ppo = [plan.ppo_run(w, placeholder, seed) for w in plan.study.ppo_weights for seed in plan.ppo_seeds(w)]
    for name, config, overrides in [*runs, *ppo]:
        resolved = resolve(plan, name, config, overrides)
        check_run(plan.out / name, resolved, derived if (name, config, overrides) in ppo else ())
    check_coordinators_agents(plan)
    check_evaluations(plan)


def resolve(plan: Plan, name: str, config: str, overrides: list[str]) -> Config:
    """The config run `name` will train with; one line naming the run if it cannot."""
    try:
        resolved = load_config(config, [f"name={name}", *plan.common, *overrides])
        check_memory(resolved)
    except ConfigError as e:
        raise ConfigError(f"run {name} ({config} with the study's overrides): {e}") from None
    if plan.study.setting == "realistic" and name in ("sim_novice", "novice"):
        check_off_test_environment(plan, name, resolved.env.task)
    model = getattr(getattr(resolved.policy, "model", None), "name", None)
    if name in plan.study.roles and is_coordinator_model(model):
        raise ConfigError(
            f"run {name} ({config}): its model {model} is a coordinator's; agents.{name}.config must train "
            "a game-playing agent (procgen_agent, minigrid_agent)"
        )
    return resolved


def check_given_agents(plan: Plan) -> None:
    """Each agent checkpoint the study is given (agents.<role>.checkpoint, or an agent file in
    coordination.overrides) is read now: a base agent of the study's suite, and in the realistic
    setting the train environment's agents were not trained on the test environment."""
    s = plan.study
    given = {f"agents.{role}.checkpoint": getattr(s.agents, role).checkpoint for role in s.roles}
    own = {str(plan.out / role / "last.ckpt") for role in s.roles}
    given.update({key: path for key, path in plan.coordination_agents().items() if path not in own})
    game = game_of(EnvConfig(name=s.suite, task=s.game))
    for key, path in given.items():
        agent = None if path is None else read_agent_checkpoint(key, path)
        if agent is not None and agent.game != game:
            raise ConfigError(f"{key} {path} was trained on {agent.game}, but the study plays {game}; pass its agent")
    if s.setting == "realistic":
        for role in ("sim_novice", "novice"):
            path = getattr(s.agents, role).checkpoint
            if path is not None:
                check_off_test_environment(plan, f"agents.{role}.checkpoint", trained_task(path))


def check_coordinators_agents(plan: Plan) -> None:
    """Every coordinator in the folder carries the novice and expert the study uses now: before
    the first job, and again before the evaluations (an agent file replaced while the study ran
    would otherwise mix two pairs in one table)."""
    agents = {key: (path, agent_weights(path)) for key, path in plan.coordination_agents().items()}
    s = plan.study
    runs = [*s.baselines, *(s.ppo.run_name(w, seed) for w in s.ppo_weights for seed in plan.ppo_seeds(w))]
    for name in runs:
        check_agents(plan.out / name, agents)


def check_evaluations(plan: Plan) -> None:
    """Every evaluation file already in the folder holds what the study would ask of it now."""
    for file in sorted(plan.out.glob("evals*/*/w*.json")):
        expected = plan.expected_evaluation(file.parent.parent.name)
        if expected is None or file.is_symlink():
            continue
        episodes, seed, split = expected
        asked = {"num_episodes": episodes, "seed": seed, "split": split, "cost_weight": float(file.stem[1:])}
        check_evaluation(file, None, asked)
    for record in sorted(plan.out.glob("ask_map/*.json")):
        check_evaluation(record, None, plan.ask_map_asks(), record.parent)


def check_off_test_environment(plan: Plan, what: str, task: str | None) -> None:
    """The realistic setting's agents of the train environment were not trained on the test environment."""
    if task == plan.study.game:
        raise ConfigError(
            f"{what} is trained on {task}, the test environment; in setting realistic the sim novice and the "
            f"novice play the train environment ({plan.study.train_game}): train them there"
        )


def trained_task(checkpoint: str) -> str | None:
    """The env.task an agent checkpoint was trained on (None if it does not say)."""
    return ((load_checkpoint(checkpoint).get("config") or {}).get("env") or {}).get("task")


def check_study_files(out: Path, folders: list[str]) -> None:
    """What the study writes at its top and in logs/ may not be a link or another special file (a link
    would send the table or a job's log outside the folder), and each of its `folders` that exists is
    a folder: refused before any work, not when the study reaches it."""
    if out.is_dir():
        check_output_file(out / "table.json", "the study's table")
    logs = out / "logs"
    if logs.is_symlink() or (logs.exists() and not logs.is_dir()):
        raise ConfigError(f"{logs} is not a folder; remove it, the study writes its jobs' logs there")
    for log in logs.glob("*") if logs.is_dir() else []:
        refuse_special(log, "job log")
    for folder in (out / name for name in folders):
        if (folder.exists() or folder.is_symlink()) and not folder.is_dir():
            raise ConfigError(f"{folder} is not a folder; move it away, the study writes into a folder of that name")
