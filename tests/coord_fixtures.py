"""Tiny real novice/expert checkpoints for the coordination tests, trained once per test worker.

The agents are real `Trainer` runs on real Procgen, just very short: the tests check plumbing and
arithmetic, not skill. Starpilot is used because its episodes are short under near-random play.
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym

from duo_ai.build import compute_from, env_maker
from duo_ai.config import Config, load_config
from duo_ai.training import Trainer

GAME = "starpilot"
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
CHANNELS = "[8,16,16]"
# Small, fast settings shared by every run in these tests.
TINY = ["env.num_envs=4", "env.num_threads=1", "num_threads=1", "evaluation.num_episodes=0"]
# ... and of every PPO run (agents and PPO coordinators).
TINY_PPO = ["algorithm.num_steps=32", "algorithm.num_minibatches=2", "algorithm.update_epochs=1"]
_agents: dict[str, Path] = {}
_always: dict[str, Path] = {}


def train(root: Path, name: str, overrides: list[str], config_path: Path | None = None) -> Path:
    """Run `duo-ai train`'s Trainer; returns the run's last.ckpt."""
    config = load_config(
        config_path, [f"name={name}", f"experiments_dir={root}", f"env.task={GAME}", *TINY, *overrides]
    )
    with Trainer(config, show_progress=False) as trainer:
        trainer.run()
    return root / name / "last.ckpt"


def agent_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """novice, expert (trained longer) and other_game (bigfish) base-agent checkpoints, made once."""
    if not _agents:
        root = tmp_path_factory.mktemp("agents")
        # Narrower convolutions than the real agents (same 256 hidden features): fast on a CPU.
        agent = ["policy.model=impala_ppo", f"policy.model.channels={CHANNELS}", *TINY_PPO]
        agent += ["algorithm.num_steps=16"]
        _agents["novice"] = train(root, "novice", [*agent, "algorithm.total_timesteps=64"])
        _agents["expert"] = train(root, "expert", [*agent, "algorithm.total_timesteps=128"])
        _agents["other_game"] = train(root, "bigfish", [*agent, "algorithm.total_timesteps=64", "env.task=bigfish"])
    return _agents


def coordination_config(agents: dict[str, Path], root: Path, *overrides: str) -> Config:
    """A coordination run over the tiny agents with a given base_penalty (no measurement)."""
    return load_config(
        None,
        [
            f"experiments_dir={root}",
            f"env.task={GAME}",
            f"train_novice={agents['novice']}",
            f"train_expert={agents['expert']}",
            "coordination.base_penalty=0.5",
            "coordination.train_agent_splits=[train]",  # the default's val_sim is not a split here
            *TINY,
            *overrides,
        ],
    )


def make_run_env(config: Config, split: str = "train", num_envs: int | None = None) -> gym.vector.VectorEnv:
    """The env a run built from `config` would use for `split` (coordination set-up included)."""
    return env_maker(config, compute_from(config), log=lambda message: None, split=split)(split, num_envs)


def always_coordinators(tmp_path_factory) -> dict[str, Path]:
    """Run folders of always-novice and always-expert coordinators, evaluated on 2 episodes per split, made once."""
    if not _always:
        agents = agent_checkpoints(tmp_path_factory)
        root = tmp_path_factory.mktemp("always")
        common = [f"train_novice={agents['novice']}", f"train_expert={agents['expert']}"]
        common += ["coordination.base_penalty=0.5", "evaluation.num_episodes=2", "evaluation.num_envs=2"]
        for agent in ("novice", "expert"):
            ckpt = train(root, agent, [*common, f"policy.agent={agent}"], CONFIGS / "procgen_always.yaml")
            _always[agent] = ckpt.parent
    return _always
