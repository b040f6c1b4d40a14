"""The coordination benchmark's protocol, end to end, as `duo-ai` jobs (subprocesses, or Slurm jobs):

1. agents: a novice and an expert (or given checkpoints);
2. the gate, before any coordinator: always-novice and always-expert on the test split (the first
   always-agent's run measures the cost unit, base_penalty, and caches it beside the expert);
3. the calibrated baselines, calibrated once (re-calibrated per weight at evaluation from their
   stored validation episodes); a PPO coordinator per cost weight, plus the sanity weights;
4. every method evaluated on the same test episodes (paired) at every weight, and
   `duo-ai study-report`: the study's weight on `evaluation.episodes` (OUT/evals, OUT/report), and,
   with `evaluation.auc_episodes`, every grid weight apart for the AUC (OUT/evals_auc, OUT/report_auc);
5. with `evaluation.confirm_episodes`, every method again at the study's weight on fresh episodes
   (OUT/evals_confirm_seedS, OUT/report_confirm_seedS), nothing selected on them.
OUT/table.json is the study's table at its weight: the confirmation's where there is one.

Runs that finished (summary.json) are reused and runs stopped part-way (last.ckpt) resume, so a
rerun only redoes what is missing.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import yaml

from duo_ai.core.errors import ConfigError
from duo_ai.core.files import atomic_write_text, check_name_lengths, json_text
from duo_ai.runs import release_lock, take_lock
from duo_ai.study.checks import check_before_any_job, check_coordinators_agents, check_study_files
from duo_ai.study.jobs import Output, Pool, make_launcher
from duo_ai.study.plan import Plan
from duo_ai.study.reuse import check_evaluation
from duo_ai.study.schema import ALWAYS, GATE, Study, study_to_yaml, weight_name

# PPO's start at random's rate is kept within this range so that it still tries both agents (a few
# hundred times in procgen_small's 262,144 steps). Wider than the former [0.05, 0.95]: where random
# never asks, a 5% start costs ~29 expert steps in the novice's ~580-step episodes, and PPO with
# GAE lambda 1 keeps its start.
START_RANGE = (0.001, 0.999)
# Held while a study runs in its folder: a second study into the same folder is refused.
STUDY_LOCK = "study.lock"


class Protocol(Plan):
    """Runs one study's plan: its jobs in stages, through the pool."""

    def __init__(self, study: Study, pool: Pool) -> None:
        super().__init__(study, pool.launcher.threads)  # 0 threads: the launcher's share of the cores
        self.pool = pool
        self.start = time.monotonic()

    # -- jobs -------------------------------------------------------------------------------------
    def train(self, out: Output, name: str, config: str, overrides: list[str]) -> None:
        """Reuse a finished run, resume a stopped one (its own saved config), else start it afresh
        (a job that starts again once the fresh run has a last.ckpt resumes it: a Slurm requeue)."""
        run = self.out / name
        if (run / "summary.json").is_file():
            return out.say(f"reusing {run}")
        resume = ["train", "--resume", str(run), *self.compute, "--no-progress"]
        if (run / "last.ckpt").is_file():
            out.say(f"resuming {run} from its last.ckpt")
            return out.run(resume)
        fresh = ["train", "-c", config, f"name={name}", "overwrite=true", *self.common, *overrides, "--no-progress"]
        out.run(fresh, resume=(run, resume))

    def spawn_train(self, run: tuple[str, str, list[str]]) -> None:
        self.pool.spawn(run[0], lambda out: self.train(out, *run))

    def evaluate(self, out: Output, method: str, checkpoint: str, weight: str, episodes: int, folder: Path,
                 seed: int, split: str = "test") -> None:  # fmt: skip
        """Episodes of `split` (test), paired: the same seed, number of episodes and envs for every method."""
        file = folder / method / f"w{weight}.json"
        file.parent.mkdir(parents=True, exist_ok=True)
        if file.is_file():
            asked = {"num_episodes": episodes, "seed": seed, "split": split, "cost_weight": float(weight)}
            check_evaluation(file, checkpoint, asked)
            return out.say(f"reusing {file}")
        command = ["eval", "--checkpoint", checkpoint, "--split", split, "-n", str(episodes), "--seed", str(seed)]
        command += ["--cost-weight", weight, "--json", str(file), *self.compute]
        out.run([*command, f"evaluation.num_envs={self.study.evaluation.num_envs}"], quiet=True)
        out.say(f"evaluated {method} at weight {weight} on {episodes} episodes (seed {seed})")

    def spawn_evaluations(self, methods: list[tuple[str, str]], weight: str, episodes: int, folder: Path,
                          seed: int, split: str = "test") -> None:  # fmt: skip
        """Evaluate each (method, checkpoint); a job's log is named after the folder (eval_ppo_w1_auc)."""
        tag = "" if folder.name == "evals" else "_" + folder.name.removeprefix("evals_")
        for method, checkpoint in methods:
            suffix = "" if method.startswith(ALWAYS) else f"_w{weight}"
            self.pool.spawn(
                f"eval_{method}{suffix}{tag}",
                lambda out, m=method, c=checkpoint: self.evaluate(out, m, c, weight, episodes, folder, seed, split),
            )

    def evaluate_always_agents(self, episodes: int, folder: Path, seed: int, split: str = "test") -> None:
        """The always-agents at weight 0: their episodes do not depend on the weight (the report re-prices them)."""
        agents = [name for name in self.study.baselines if name.startswith(ALWAYS)]
        methods = [(m, str(self.out / m / "last.ckpt")) for m in agents]
        self.spawn_evaluations(methods, "0", episodes, folder, seed, split)

    def evaluate_coordinators(self, weight: str, episodes: int, folder: Path, seed: int) -> None:
        """The calibrated baselines and PPO (its pick on the selection split) at one weight."""
        methods = [(m, str(self.out / m / "last.ckpt")) for m in self.study.calibrated]
        ppo = self.study.ppo
        for training_seed in ppo.seeds:
            run = self.out / ppo.run_name(weight, training_seed)
            best = run / f"best_{self.selection}.ckpt"
            methods.append((ppo.method_name(training_seed), str(best if best.is_file() else run / "last.ckpt")))
        self.spawn_evaluations(methods, weight, episodes, folder, seed)

    def report(self, evals: str, weight: str, output: str, weights: str | None = None) -> None:
        command = ["study-report", str(self.out / evals), "--weight", weight]
        command += ["--weights", weights] if weights is not None else []
        command += ["-o", str(self.out / output), "--root", str(self.out)]
        self.pool.now("study-report", lambda out: out.run(command))

    # -- stages -----------------------------------------------------------------------------------
    def agents_and_gate(self) -> None:
        """The agents, then always-novice and always-expert before any coordinator: on the test split
        (skyline), or on val_sim, the simulated pair on the train environment (realistic; the test
        split's gate then comes with the final evaluations)."""
        s, e = self.study, self.study.evaluation
        # Where each agent plays in the coordination runs: a realistic study's novices on the train environment.
        home = {role: s.train_game if s.setting == "realistic" and role != "expert" else s.game for role in s.roles}
        about = {role: " ".join(filter(None, [home[role], getattr(s.agents, role).about])) for role in s.roles}
        self.stage("agents: " + ", ".join(f"{role.replace('_', ' ')} ({about[role]})" for role in s.roles))
        runs = self.agent_runs()
        for waits in (False, True):  # at once, but an agent that starts from another's weights after it
            for run in runs:
                if (getattr(s.agents, run[0]).init is not None) == waits:
                    self.spawn_train(run)
            self.pool.join()
        print("; ".join(f"{role.replace('_', ' ')}: {self.agents[role]}" for role in s.roles), flush=True)
        split = "test" if s.setting == "skyline" else self.selection
        self.stage(
            f"the gate, before any coordinator: always-novice and always-expert, {e.episodes} {split} episodes each"
        )
        for name in [m for m in s.baselines if m.startswith(ALWAYS)]:  # in turn: the first measures base_penalty
            self.pool.now(name, lambda out, name=name: self.train(out, *self.baseline_run(name)))
        gate = self.out / ("evals" if split == "test" else f"evals_{split}")
        self.evaluate_always_agents(e.episodes, gate, e.seed, split)
        self.pool.join()
        self.share_base_penalty()
        self.gate(gate, split)

    def coordinators(self) -> None:
        """The calibrated baselines, then a PPO coordinator per weight; the sanity weights' ask rates."""
        s = self.study
        self.stage(f"baselines: {', '.join(s.calibrated)} (calibrated on {self.selection})")
        for name in s.calibrated:
            self.spawn_train(self.baseline_run(name))
        if s.ppo.start == "random":
            self.pool.join()  # PPO starts from random's calibration
        sanity = [weight_name(w) for w in s.sanity_weights]
        self.stage(
            f"PPO coordinators at cost weights {' '.join(s.ppo_weights)} (the study's weight, the grid, "
            f"the sanity check's {' and '.join(sanity)})"
        )
        for w in s.ppo_weights:
            start = self.ppo_start(w)
            if start:
                print(f"PPO at weight {w} starts at random's rate: {start[0]}", flush=True)
            for seed in self.ppo_seeds(w):
                self.spawn_train(self.ppo_run(w, start, seed))
        self.pool.join()
        for w in sanity:
            for seed in self.ppo_seeds(w):
                self.sanity(w, seed)

    def evaluations(self) -> Path:
        """Every method at every weight, paired, and the reports; returns the study's report table.

        The first time a realistic study plays the test environment: the always-agents' test episodes
        (the gate, skyline's first stage) come first."""
        s, e = self.study, self.study.evaluation
        weight, weights, evals = weight_name(s.weight), [weight_name(w) for w in s.weights], self.out / "evals"
        check_coordinators_agents(self)
        if s.setting == "realistic":
            self.stage(f"the final evaluations, on the test environment: the gate, {e.episodes} test episodes each")
            self.evaluate_always_agents(e.episodes, evals, e.seed)
            self.pool.join()
            self.gate(evals, "test")
        if s.auc_episodes == e.episodes:
            self.stage(
                "evaluation: every coordinator at every weight (the study's first), "
                f"the same {e.episodes} test episodes"
            )
            for w in [weight, *(w for w in weights if w != weight)]:
                self.evaluate_coordinators(w, e.episodes, evals, e.seed)
            self.pool.join()
            self.stage("report")
            self.report("evals", weight, "report")
            return self.out / "report" / "table.json"
        self.stage(f"evaluation at the study's weight {weight}: every coordinator, the same {e.episodes} test episodes")
        self.evaluate_coordinators(weight, e.episodes, evals, e.seed)
        self.pool.join()
        self.report("evals", weight, "report", weights=weight)
        self.stage(
            f"evaluation for the AUC: every method at every weight ({' '.join(weights)}), "
            f"the same {s.auc_episodes} test episodes"
        )
        self.evaluate_always_agents(s.auc_episodes, self.out / "evals_auc", e.seed)
        for w in weights:
            self.evaluate_coordinators(w, s.auc_episodes, self.out / "evals_auc", e.seed)
        self.pool.join()
        # The AUC report's row: the grid weight nearest to the study's (the later one on a tie).
        nearest = min(reversed(s.weights), key=lambda w: round(abs(w - s.weight), 9))
        self.report("evals_auc", weight_name(nearest), "report_auc")
        return self.out / "report" / "table.json"

    def ask_maps(self) -> None:
        """MiniGrid: where each PPO coordinator asks on the grid at the study's weight, beside where the
        novice alone fails, on the study's test episodes (OUT/ask_map/<method>_w<W>.png and .json)."""
        if self.study.suite != "minigrid":
            return
        s, weight = self.study, weight_name(self.study.weight)
        self.stage(f"where PPO asks at weight {weight}: ask maps on {s.evaluation.episodes} test episodes")
        folder = self.out / "ask_map"
        folder.mkdir(exist_ok=True)
        for seed in s.ppo.seeds:
            run = self.out / s.ppo.run_name(weight, seed)
            best = run / f"best_{self.selection}.ckpt"
            checkpoint = str(best if best.is_file() else run / "last.ckpt")
            picture = folder / f"{s.ppo.method_name(seed)}_w{weight}.png"
            command = ["ask-map", "--checkpoint", checkpoint, "-o", str(picture), "-n", str(s.evaluation.episodes)]
            command += ["--seed", str(s.evaluation.seed), *self.compute, f"evaluation.num_envs={s.evaluation.num_envs}"]
            self.pool.spawn(f"ask_map_{picture.stem}", lambda out, p=picture, c=command: self.ask_map(out, p, c))
        self.pool.join()

    def ask_map(self, out: Output, picture: Path, command: list[str]) -> None:
        """Draw one ask map, or reuse it where its record holds the same episodes of the same checkpoint."""
        record = picture.with_suffix(".json")
        if picture.is_file() and record.is_file():
            check_evaluation(record, command[command.index("--checkpoint") + 1], self.ask_map_asks(), picture.parent)
            return out.say(f"reusing {picture}")
        out.run(command)

    def confirmation(self) -> Path:
        """Every method again at the study's weight on fresh episodes; returns its report table."""
        weight, e = weight_name(self.study.weight), self.study.evaluation
        confirm = f"confirm_seed{e.confirm_seed}"
        self.stage(
            f"confirmation at the study's weight {weight}: every method, {e.confirm_episodes} fresh test "
            f"episodes (seed {e.confirm_seed})"
        )
        self.evaluate_always_agents(e.confirm_episodes, self.out / f"evals_{confirm}", e.confirm_seed)
        self.evaluate_coordinators(weight, e.confirm_episodes, self.out / f"evals_{confirm}", e.confirm_seed)
        self.pool.join()
        self.report(f"evals_{confirm}", weight, f"report_{confirm}", weights=weight)
        return self.out / f"report_{confirm}" / "table.json"

    # -- output -----------------------------------------------------------------------------------
    def stage(self, text: str) -> None:
        print(f"\n== [{datetime.now():%H:%M:%S}, +{self.elapsed()}s] {text}", flush=True)

    def elapsed(self) -> int:
        return int(time.monotonic() - self.start)

    def annotate(self, table: Path) -> None:
        """Say in the study's table in which setting its methods were built, and where they were selected."""
        s = self.study
        data = json.loads(table.read_text())
        data.update(setting=s.setting, train_env=s.train_game if s.setting == "realistic" else s.game)
        data["selection_split"] = self.selection
        atomic_write_text(table, json_text(data, indent=2) + "\n")

    def share_base_penalty(self) -> None:
        """Every later run is priced in the unit the gate's runs measured (or were given).

        A run that measures base_penalty itself does so under its own seed (the expert samples its
        actions), so PPO coordinators of other training seeds would each get a slightly different
        unit and could not be compared on paired episodes.
        """
        first = next(name for name in self.study.baselines if name.startswith(ALWAYS))
        config = yaml.safe_load((self.out / first / "config.yaml").read_text())
        self.pair.append(f"coordination.base_penalty={config['coordination']['base_penalty']!r}")

    def gate(self, folder: Path, split: str) -> None:
        """Print the novice's share of the expert's return on `split` and the weight where they break even."""
        novice, expert = (json.loads((folder / m / "w0.json").read_text()) for m in GATE)
        n, e = novice["base_reward_mean"], expert["base_reward_mean"]
        even = (e - n) / (expert["base_penalty"] * expert["expert_steps_mean"]) if e > n else 0.0
        ratio = f"{n / e:.3f}" if e > 0 else "n/a (the expert scores 0)"
        pair = "sim novice, novice as expert" if split == "val_sim" else "novice, expert"
        print(
            f"gate ({pair}): novice {n:.2f}, expert {e:.2f} on {split}: the novice gets {ratio} of the expert "
            f"(the benchmark wants at most about 0.55); always-expert and always-novice break even at cost "
            f"weight {even:.2f}",
            flush=True,
        )

    def ppo_start(self, weight: str) -> list[str]:
        """With ppo.start random: the probability of asking random's calibration chooses at `weight`, clamped."""
        if self.study.ppo.start != "random":
            return []
        from duo_ai.coordination.baselines import reselect
        from duo_ai.core.checkpoint import load_checkpoint

        payload = load_checkpoint(self.out / "random" / "last.ckpt")
        c = payload["config"]["coordination"]
        p = reselect(payload["calibration"], float(weight), c["base_penalty"], c["switch_agent_cost_weight"])
        low, high = START_RANGE
        return [f"policy.model.expert_prob_init={min(max(p, low), high):g}"]

    def sanity(self, weight: str, seed: int) -> None:
        """The expert fraction of the PPO coordinator at a sanity weight on the selection split."""
        run = self.study.ppo.run_name(weight, seed)
        evals = json.loads((self.out / run / "summary.json").read_text())["eval"]
        split = self.selection if self.selection in evals else next(iter(evals))
        fraction = evals[split]["expert_fraction"]
        seeded = "" if seed == self.study.ppo.seeds[0] else f" (seed {seed})"
        print(f"sanity: PPO at weight {weight}{seeded} asks the expert on {fraction:.1%} of {split} steps", flush=True)


def record(path: Path, text: str) -> None:
    """Write the study as it runs; a different earlier record is kept beside it, named by its time."""
    if path.is_file() and path.read_text() != text:
        when = datetime.fromtimestamp(path.stat().st_mtime)
        path.rename(path.with_name(f"{path.stem}_{when:%Y%m%d-%H%M%S}{path.suffix}"))
    atomic_write_text(path, text)


def run_study(study: Study, gate_only: bool = False, command: str = "", imports: list[str] | None = None) -> None:
    """Check every run's config, write OUT/study.yaml, and run the protocol (see the module's docstring).

    `imports` (`--import MODULE` arguments) are passed on to every job that builds a config."""
    out = Path(study.out)
    with Pool(study.jobs, out / "logs", imports, make_launcher(study)) as pool:
        p = Protocol(study, pool)
        check_before_any_job(p)
        check_study_files(out, p.written_folders())
        check_name_lengths(out, "study folder")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # /proc/x, a read-only disk...: before any job
            raise ConfigError(f"study folder {out} cannot be created ({e.strerror}); pass --out DIR") from None
        take_lock(
            out / STUDY_LOCK,
            lambda who: f"study folder {out} is in use by {who}, another duo-ai study; wait for it or pass --out DIR",
        )
        try:
            run_protocol(p, study, gate_only, command)
        finally:
            release_lock(out / STUDY_LOCK)


def run_protocol(p: Protocol, study: Study, gate_only: bool, command: str) -> None:
    """The protocol's stages in order (see the module's docstring), under the study's lock."""
    out = Path(study.out)
    record(out / "study.yaml", f"# The study as it ran: {command}\n{study_to_yaml(study)}")
    p.agents_and_gate()
    if gate_only:
        print("stopped after the gate (--gate-only); rerun without it to train and evaluate the coordinators")
    else:
        p.coordinators()
        table = p.evaluations()
        p.ask_maps()
        if study.evaluation.confirm_episodes > 0:
            table = p.confirmation()
        # The study's table where a script looks for it (its checkpoint paths are relative to OUT);
        # written atomically, so a link there is replaced, never followed.
        atomic_write_text(out / "table.json", table.read_text())
        p.annotate(out / "table.json")
        print(f"the study's table: {out / 'table.json'} (from {table.relative_to(out)})")
    print(f"wall-clock: {p.elapsed()}s", flush=True)
