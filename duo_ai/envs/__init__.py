"""Vector environments built from an `EnvConfig` and a split name, by env family (`env.name`).

Each family registers an `EnvFamily` in `ENVS`: how to build its vector env, which settings and
tasks it accepts, and which agents can play it. A new family is a class and a `register` call.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import gymnasium as gym

from duo_ai.core.errors import ConfigError
from duo_ai.envs.classic import check_gym_id, make_gym_vec_env
from duo_ai.envs.config import ENVS, EnvConfig, SplitConfig
from duo_ai.envs.minigrid import MiniGridVecEnv
from duo_ai.envs.procgen import GAMES, ProcgenVecEnv


class EnvFamily:
    """One `env.name`: builds its vector env and checks the settings that only it understands."""

    # Fields of EnvConfig that only this family reads, with the value that means "not set".
    own_settings: dict[str, Any] = {}

    def make(self, cfg: EnvConfig, num_envs: int, seed: int) -> gym.vector.VectorEnv:
        raise NotImplementedError

    def check_task(self, task: str) -> None:
        """Refuse a task this family does not have (one line, with the closest names)."""

    def check(self, cfg: EnvConfig) -> None:
        """Refuse another family's settings, and an unknown task, before anything is built."""
        defaults = EnvConfig()
        for family in ENVS.names():
            other = ENVS.get(family)()
            if family == cfg.name:
                continue
            for key in other.own_settings:
                if key in self.own_settings:
                    continue
                value, unset = getattr(cfg, key), getattr(defaults, key)
                if value != unset:
                    raise ConfigError(
                        f"env.{key}={value!r} is a {family} setting and env.name={cfg.name} has none; "
                        f"remove it (or set env.name={family})"
                    )
        for name, split in cfg.splits.items():
            if split.distribution_mode is not None and "distribution_mode" not in self.own_settings:
                raise ConfigError(
                    f"env.splits.{name}.distribution_mode is a procgen setting and env.name={cfg.name} has none; "
                    "set the split's levels with start_level and num_levels"
                )
        self.check_task(cfg.task)
        for name, split in cfg.splits.items():
            if split.task is None:
                continue
            self.check_task(split.task)
            if self.game(replace(cfg, task=split.task)) != self.game(cfg):
                raise ConfigError(
                    f"env.splits.{name}.task={split.task} is another game than env.task={cfg.task}, which the "
                    f"agents could not play; a split may change the task only within one game (MiniGrid layouts)"
                )

    def game(self, cfg: EnvConfig) -> str:
        """What agents must have been trained on to act here: agents of one game share spaces."""
        return f"{cfg.name}/{cfg.task}"


@ENVS.register("procgen")
class ProcgenFamily(EnvFamily):
    own_settings = {"distribution_mode": "easy", "num_threads": 0}

    def make(self, cfg: EnvConfig, num_envs: int, seed: int) -> gym.vector.VectorEnv:
        return ProcgenVecEnv(
            cfg.task, num_envs, cfg.distribution_mode, cfg.start_level, cfg.num_levels, cfg.num_threads, seed=seed
        )

    def check_task(self, task: str) -> None:
        if task not in GAMES:
            raise ConfigError(f"unknown Procgen game {task!r}; choose one of: {', '.join(GAMES)}")


@ENVS.register("minigrid")
class MiniGridFamily(EnvFamily):
    own_settings = {"kwargs": {}}

    def make(self, cfg: EnvConfig, num_envs: int, seed: int) -> gym.vector.VectorEnv:
        return MiniGridVecEnv(cfg.task, num_envs, cfg.start_level, cfg.num_levels, cfg.kwargs, seed=seed)

    def check_task(self, task: str) -> None:
        from duo_ai.envs.minigrid import check_task

        check_task(task)

    def check(self, cfg: EnvConfig) -> None:
        super().check(cfg)
        from duo_ai.envs.minigrid import check_kwargs

        tasks = {cfg.task, *(split.task for split in cfg.splits.values() if split.task)}
        for task in sorted(tasks):
            check_kwargs(task, cfg.kwargs)

    def game(self, cfg: EnvConfig) -> str:
        # Every MiniGrid env shows the same 7x7 view and takes the same 7 actions, and a study's
        # novice and expert are trained on different layouts (DistShift1 and DistShift2): one game.
        return "minigrid"


@ENVS.register("gym")
class GymFamily(EnvFamily):
    def make(self, cfg: EnvConfig, num_envs: int, seed: int) -> gym.vector.VectorEnv:
        return make_gym_vec_env(cfg.task, num_envs)

    def check_task(self, task: str) -> None:
        check_gym_id(task)


def env_family(config: EnvConfig) -> EnvFamily:
    return ENVS.get(config.name)()


def split_config(config: EnvConfig, split: str) -> EnvConfig:
    """The env settings of `split`: `train` is the config itself; others override its level fields."""
    if split == "train":
        return config
    if split not in config.splits:
        known = ", ".join(["train", *config.splits])
        raise ConfigError(f"unknown split {split!r}; choose one of: {known} (or define env.splits.{split})")
    overrides = {k: v for k, v in vars(config.splits[split]).items() if v is not None}
    return replace(config, **overrides)


def check_split_name(config: EnvConfig, key: str, split: str) -> None:
    """Refuse config key `key` naming a split that is neither `train` nor one of `config.splits`."""
    splits = ["train", *config.splits]
    if split not in splits:
        raise ConfigError(
            f"{key} names split {split!r}, which is not defined; {key} must name one of "
            f"{', '.join(splits)} (or define env.splits.{split})"
        )


def make_env(
    config: EnvConfig, split: str = "train", num_envs: int | None = None, seed: int = 0
) -> gym.vector.VectorEnv:
    """Build the vector env for `split` with `num_envs` copies (default `config.num_envs`).

    The env is not reset yet; call `env.reset(seed=...)`. `seed` seeds the level sampling.
    """
    cfg = split_config(config, split)
    return env_family(cfg).make(cfg, num_envs or cfg.num_envs, seed)


__all__ = [
    "ENVS",
    "GAMES",
    "EnvConfig",
    "EnvFamily",
    "MiniGridVecEnv",
    "ProcgenVecEnv",
    "SplitConfig",
    "env_family",
    "make_env",
    "split_config",
]
