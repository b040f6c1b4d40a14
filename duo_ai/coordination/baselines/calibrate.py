"""`calibrate`: the algorithm that sets up a baseline coordinator, and `reselect`, its choice at
another cost weight.

Every candidate value of the baseline's parameter is evaluated on a validation split with the same
levels and seed, and the one with the best mean reward (costs included) is kept. The checkpoint
stores the chosen value as a tensor in `model_state_dict` and the whole sweep under `calibration`
(`ood` also its fitted states).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from duo_ai.coordination.baselines.base import CoordinationPolicy
from duo_ai.coordination.sweep import reprice
from duo_ai.core.algorithm import Algorithm, AlgorithmConfig
from duo_ai.core.checks import checked
from duo_ai.core.errors import ConfigError
from duo_ai.core.policy import Policy
from duo_ai.core.registry import ALGORITHMS, POLICIES
from duo_ai.envs import check_split_name
from duo_ai.evaluation import EvalResult, evaluate

# Level-sampling seed offset of the validation episodes, apart from training and evaluation seeds.
CALIBRATION_SEED_OFFSET = 30_000


def expert_fraction(result: EvalResult) -> float:
    """Share of all evaluated steps in which the expert acted."""
    return float(np.sum(result.extra["expert_steps"]) / np.sum(result.lengths))


def baseline_names() -> list[str]:
    """The registered policies that `calibrate` sets up."""
    return [name for name in POLICIES.names() if issubclass(POLICIES.get(name), CoordinationPolicy)]


@dataclass
class CalibrateConfig(AlgorithmConfig):
    """Calibration of a baseline coordinator on the validation split `split`.

    Each candidate is evaluated over `num_episodes` episodes on `num_envs` envs, and each
    episode's base reward, expert steps and switches are kept, so the choice can be made again at
    any other cost weight by re-pricing them (`reselect`). `rollout_episodes` complete episodes of
    novice play on the training split give the logit and ood thresholds. `split: null` = the run's
    `coordination.selection_split`. An iteration
    evaluates one candidate, and the run saves after each (`save_freq`).
    """

    name: str = "calibrate"
    save_freq: int = checked(1, ge=0)
    # Checked against env.splits with the whole run config (`check_run`).
    split: str | None = None
    num_episodes: int = checked(64, ge=1)
    num_envs: int = checked(32, ge=1)
    rollout_episodes: int = checked(64, ge=1)

    def resolve(self, config: Any) -> None:
        """`algorithm.split: null` takes `coordination.selection_split`: every method is selected on one split."""
        if self.split is None:
            self.split = config.coordination.selection_split

    def check_run(self, config: Any) -> None:
        """`algorithm.split` is `train` or a split of `env.splits`."""
        check_split_name(config.env, "algorithm.split", self.split)


@ALGORITHMS.register("calibrate")
class Calibrate(Algorithm):
    """Sets up a baseline coordinator without gradient steps: the best candidate on validation.

    Iteration 0 fits what the policy learns (`ood`'s detector) and lists the candidates (for
    `logit` and `ood`, percentiles of the novice's scores from a rollout on the training env);
    iteration k evaluates candidate k on the validation split, on the same levels and seed for
    every candidate; the last one keeps the best. A policy with nothing to calibrate (`always`)
    takes no iterations. The validation env is built up front, so a policy can refuse it
    (`check_env`) before any work.
    """

    config_cls = CalibrateConfig

    def __init__(self, config: CalibrateConfig, policy: Policy, *args: Any, **kwargs: Any) -> None:
        """`args`, `kwargs`: the env, seed, env factory and process context, as `Algorithm` takes them."""
        if not isinstance(policy, CoordinationPolicy):
            raise ConfigError(
                f"algorithm calibrate sets up baseline coordinators ({', '.join(baseline_names())}), "
                f"not {type(policy).__name__}; train a ppo policy with algorithm.name=ppo"
            )
        super().__init__(config, policy, *args, **kwargs)
        self.num_iterations = 0 if policy.param is None else 1 + policy.num_candidates()
        # The sweep as it runs: candidates, their validation rewards and expert fractions, the choice.
        self.calibration: dict[str, Any] = {"param": policy.param, "split": config.split}
        self.val_env: gym.vector.VectorEnv | None = None
        if self.num_iterations:
            self.val_env = self.make_env(config.split, min(config.num_envs, config.num_episodes))
            try:
                policy.check_env(self.val_env, config.split)
            except BaseException:
                self.close()
                raise

    def train_iteration(self) -> dict[str, float]:
        param, cfg, sweep = self.policy.param, self.config, self.calibration
        if self.iteration == 0:
            fit_steps = self.policy.fit(self.env, self.seed)
            sweep["candidates"], steps = self.policy.candidates(self.env, cfg.rollout_episodes, self.seed)
            sweep["reward_mean"], sweep["expert_fraction"], sweep["episodes"] = [], [], []
            self.global_step += fit_steps + steps
            self.iteration += 1
            return {"calibrate/num_candidates": float(len(sweep["candidates"]))}

        value = sweep["candidates"][self.iteration - 1]
        self.policy.set_params({param: torch.tensor(value, dtype=torch.float64)})
        result = evaluate(
            self.policy, self.val_env, cfg.num_episodes, seed=self.seed + CALIBRATION_SEED_OFFSET, split=cfg.split
        )
        sweep["reward_mean"].append(float(np.mean(result.returns)))
        sweep["expert_fraction"].append(expert_fraction(result))
        sweep["episodes"].append({k: result.extra[k] for k in ("base_reward", "expert_steps", "switches")})
        self.global_step += int(np.sum(result.lengths))
        self.iteration += 1
        stats = {
            "calibrate/candidate": value,
            "calibrate/reward": sweep["reward_mean"][-1],
            "calibrate/expert_fraction": sweep["expert_fraction"][-1],
        }
        if self.done:
            best = int(np.argmax(sweep["reward_mean"]))  # the first of equals: candidates are in a meaningful order
            sweep["chosen"] = sweep["candidates"][best]
            stats["calibrate/chosen"] = sweep["chosen"]
            self.close()
        if "chosen" in sweep:
            self.policy.set_params({param: torch.tensor(sweep["chosen"], dtype=torch.float64)})
        return stats

    def close(self) -> None:
        if self.val_env is not None:
            self.val_env.close()
            self.val_env = None

    def state_dict(self) -> dict[str, Any]:
        calibration = copy.deepcopy(self.calibration)  # a snapshot: the sweep goes on growing
        return {"global_step": self.global_step, "iteration": self.iteration, "calibration": calibration}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.global_step = int(state["global_step"])
        self.iteration = int(state["iteration"])
        self.calibration = state.get("calibration") or self.calibration


def reselect(calibration: dict[str, Any], weight: float, base_penalty: float, switch_weight: float) -> float:
    """The candidate calibration would have chosen at expert-query cost `weight`.

    A baseline's decisions never depend on the cost, so its validation episodes at one weight are
    its episodes at every weight: re-pricing them (`reprice`) gives exactly what calibrating at
    `weight` gives.
    """
    rewards = [
        np.mean(reprice(ep["base_reward"], ep["expert_steps"], ep["switches"], weight, switch_weight, base_penalty))
        for ep in calibration["episodes"]
    ]
    return calibration["candidates"][int(np.argmax(rewards))]
