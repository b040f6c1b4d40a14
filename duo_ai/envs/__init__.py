"""Vector environments built from an `EnvConfig` and a split name."""

from __future__ import annotations

from dataclasses import replace

import gymnasium as gym

from duo_ai.core.errors import ConfigError, EnvError
from duo_ai.envs.classic import make_gym_vec_env
from duo_ai.envs.config import ENV_FAMILIES, EnvConfig, SplitConfig
from duo_ai.envs.procgen import GAMES, ProcgenVecEnv


def split_config(config: EnvConfig, split: str) -> EnvConfig:
    """The env settings of `split`: `train` is the config itself; others override its level fields."""
    if split == "train":
        return config
    if split not in config.splits:
        known = ", ".join(["train", *config.splits])
        raise ConfigError(f"unknown split {split!r}; choose one of: {known} (or define env.splits.{split})")
    overrides = {k: v for k, v in vars(config.splits[split]).items() if v is not None}
    return replace(config, **overrides)


def make_env(
    config: EnvConfig, split: str = "train", num_envs: int | None = None, seed: int = 0
) -> gym.vector.VectorEnv:
    """Build the vector env for `split` with `num_envs` copies (default `config.num_envs`).

    The env is not reset yet; call `env.reset(seed=...)`. `seed` seeds Procgen's level sampling.
    """
    cfg = split_config(config, split)
    n = num_envs or cfg.num_envs
    if cfg.name == "procgen":
        return ProcgenVecEnv(
            cfg.task, n, cfg.distribution_mode, cfg.start_level, cfg.num_levels, cfg.num_threads, seed=seed
        )
    if cfg.name == "gym":
        return make_gym_vec_env(cfg.task, n)
    raise EnvError(f"unknown env.name {cfg.name!r}; choose one of: {', '.join(ENV_FAMILIES)}")


__all__ = ["GAMES", "EnvConfig", "ProcgenVecEnv", "SplitConfig", "make_env", "split_config"]
