"""What a study makes, before anything runs: its runs (name, config, overrides), the folders it
writes, the agents its coordinators use and what each evaluation folder holds. `Protocol` runs
this plan; `duo_ai.study.checks` checks it before the first job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from duo_ai.coordination.config import AGENT_KEYS
from duo_ai.study.schema import ALWAYS, Study, weight_name

# Runs evaluate nothing while training: the study evaluates every method itself, paired.
NO_EVALUATION = "evaluation.num_episodes=0"


class Plan:
    """One study's runs, folders and evaluations under `study.out`."""

    def __init__(self, study: Study, threads: int = 0) -> None:
        # `threads`: each run's torch threads where compute.num_threads is 0 (the launcher's share).
        self.study = study
        self.out = Path(study.out)
        c = study.compute
        threads = c.num_threads or threads
        self.compute = [f"num_threads={threads}", *([f"precision={c.precision}"] if c.precision else [])]
        self.common = [f"env.name={study.suite}", f"env.task={study.game}", f"experiments_dir={study.out}"]
        self.common += self.compute
        self.agents = {
            role: getattr(study.agents, role).checkpoint or str(self.out / role / "last.ckpt") for role in study.roles
        }
        self.selection = study.selection_split
        self.pair = self.coordination_world()
        if study.coordination.base_penalty is not None:
            self.pair.append(f"coordination.base_penalty={study.coordination.base_penalty!r}")
        self.pair += study.coordination.overrides
        if study.coordination.agent_temperature is not None:
            self.pair.append(f"coordination.agent_temperature={study.coordination.agent_temperature:g}")

    def coordination_world(self) -> list[str]:
        """Which agents act where, and on which environment every coordination run plays.

        skyline: the real pair acts everywhere (test_* default to train_*), on the test environment;
        every method is selected on val_true. realistic: the train environment (train_game) for
        `train` and `val_sim`, where the sim novice plays the novice and the novice the expert; the
        test environment (game) with the real pair for `val_true` and `test`; every method is
        selected on val_sim, so nothing is built on the test environment until the final evaluations.
        """
        s, a = self.study, self.agents
        if s.setting == "skyline":
            return [f"train_novice={a['novice']}", f"train_expert={a['expert']}"]
        return [
            f"train_novice={a['sim_novice']}",
            f"train_expert={a['novice']}",
            f"test_novice={a['novice']}",
            f"test_expert={a['expert']}",
            f"env.task={s.train_game}",
            f"env.splits.val_sim.task={s.train_game}",
            f"env.splits.val_true.task={s.game}",
            f"env.splits.test.task={s.game}",
            "coordination.train_agent_splits=[train,val_sim]",
            f"coordination.selection_split={self.selection}",
        ]

    def agent_runs(self) -> list[tuple[str, str, list[str]]]:
        """(run name, config, overrides) of each agent to train; the sim novice on the train environment."""
        runs = []
        for role in self.study.roles:
            agent = getattr(self.study.agents, role)
            if agent.checkpoint is None:
                steps = [] if agent.steps is None else [f"algorithm.total_timesteps={agent.steps}"]
                own = [f"env.task={self.study.train_game}"] if role == "sim_novice" else []
                own += [f"policy.load_path={self.agents[agent.init]}"] if agent.init else []
                overrides = [*self.study.agents.overrides, *own, *steps, *agent.overrides, NO_EVALUATION]
                runs.append((role, agent.config, overrides))
        return runs

    def baseline_run(self, name: str) -> tuple[str, str, list[str]]:
        method = self.study.methods[name]
        calibration = [] if name.startswith(ALWAYS) else self.study.calibration
        return name, method.config, [*self.pair, *calibration, *method.grid, *method.overrides, NO_EVALUATION]

    def ppo_run(self, weight: str, start: list[str], seed: int) -> tuple[str, str, list[str]]:
        ppo = self.study.ppo
        overrides = [*self.pair, *ppo.overrides, f"coordination.expert_query_cost_weight={weight}", *start]
        if self.study.setting == "realistic":  # its pick, best_val_sim.ckpt; and no test episode while training
            overrides.append(f"evaluation.splits=[{self.selection}]")
        return ppo.run_name(weight, seed), ppo.config, [*overrides, f"seed={seed}"]

    def ppo_seeds(self, weight: str) -> list[int]:
        """Every seed where the weight is evaluated (the study's and the grid's); the first alone at a
        sanity-only weight, which only checks that PPO responds to the cost."""
        s = self.study
        evaluated = {weight_name(w) for w in (s.weight, *s.weights)}
        return s.ppo.seeds if weight in evaluated else s.ppo.seeds[:1]

    def coordination_agents(self) -> dict[str, str]:
        """The coordinators' agents: config key (train_novice, ...) -> the checkpoint the study gives."""
        pairs = (item.split("=", 1) for item in self.pair if "=" in item)
        return {key: value for key, value in pairs if key in AGENT_KEYS}

    def written_folders(self) -> list[str]:
        """Every folder the study writes into, relative to OUT: runs, evaluations (a folder per
        method), reports, ask maps."""
        s, e = self.study, self.study.evaluation
        runs = [*s.roles, *s.baselines]
        runs += [s.ppo.run_name(w, seed) for w in s.ppo_weights for seed in self.ppo_seeds(w)]
        methods = [*s.baselines, *map(s.ppo.method_name, s.ppo.seeds)]
        tags = ["", "_auc", f"_{self.selection}", f"_confirm_seed{e.confirm_seed}"]
        evals = [f"evals{tag}" for tag in tags]
        return [*runs, *evals, *(f"{x}/{m}" for x in evals for m in methods), *(f"report{t}" for t in tags), "ask_map"]

    def expected_evaluation(self, folder: str) -> tuple[int, int, str] | None:
        """(episodes, seed, split) the study asks of the evaluations in OUT/`folder`; None: a folder it
        does not use."""
        e, s = self.study.evaluation, self.study
        expected = {
            "evals": (e.episodes, e.seed, "test"),
            **({"evals_auc": (s.auc_episodes, e.seed, "test")} if s.auc_episodes != e.episodes else {}),
            f"evals_{self.selection}": (e.episodes, e.seed, self.selection),
            **(
                {f"evals_confirm_seed{e.confirm_seed}": (e.confirm_episodes, e.confirm_seed, "test")}
                if e.confirm_episodes
                else {}
            ),
        }
        return expected.get(folder)

    def ask_map_asks(self) -> dict[str, Any]:
        e = self.study.evaluation
        return {"episodes": e.episodes, "seed": e.seed, "split": "test"}
