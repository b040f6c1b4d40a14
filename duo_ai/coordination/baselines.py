"""Baseline coordinators, and `calibrate`, the algorithm that sets them up.

- `always`: the same agent acts at every step (`agent: novice` or `expert`).
- `random`: ask the expert with probability `prob`.
- `logit`: ask the expert when a confidence score of the novice's logits falls below `threshold`.

None has a network. The one parameter of `random` (prob) and `logit` (threshold) is chosen by
`calibrate`: every candidate is evaluated on a validation split with the same levels and seed, and
the one with the best mean reward (costs included) is kept. The checkpoint stores the chosen value
as a tensor in `model_state_dict` and the whole sweep under `calibration`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from duo_ai.coordination.env import EXPERT, NOVICE
from duo_ai.core.algorithm import Algorithm, AlgorithmConfig, EnvFactory
from duo_ai.core.checks import Rule, checked
from duo_ai.core.compute import Compute
from duo_ai.core.distributed import ProcessContext
from duo_ai.core.errors import CheckpointError, ConfigError
from duo_ai.core.policy import Policy
from duo_ai.core.registry import ALGORITHMS, POLICIES
from duo_ai.evaluation import EvalResult, episode_quotas, evaluate
from duo_ai.policies.ppo import spaces_of

# Level-sampling seed offset of the validation episodes, apart from training and evaluation seeds.
CALIBRATION_SEED_OFFSET = 30_000


def _margin(logits: torch.Tensor) -> torch.Tensor:
    top2 = logits.softmax(-1).topk(2, dim=-1).values
    return top2[..., 0] - top2[..., 1]


def _neg_entropy(logits: torch.Tensor) -> torch.Tensor:
    log_probs = logits.log_softmax(-1)
    return (log_probs.exp() * log_probs).sum(-1)


# Confidence scores of the novice's logits [B, A] -> [B]; higher = more confident.
SCORES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "max_logit": lambda logits: logits.max(-1).values,
    "max_prob": lambda logits: logits.softmax(-1).max(-1).values,
    "margin": _margin,
    "neg_entropy": _neg_entropy,
    # Negative free energy, logsumexp of the logits (Liu et al. 2020, energy-based OOD detection).
    "energy": lambda logits: torch.logsumexp(logits, -1),
}


def expert_fraction(result: EvalResult) -> float:
    """Share of all evaluated steps in which the expert acted."""
    return float(np.sum(result.extra["expert_steps"]) / np.sum(result.lengths))


class CoordinationPolicy(Policy):
    """A coordinator without a network. `param` names its calibrated parameter (None: nothing to calibrate)."""

    param: str | None = None

    def __init__(self, config: Any, env: gym.vector.VectorEnv) -> None:
        self.config = config
        self.observation_space, self.action_space = spaces_of(env)
        if (
            not isinstance(self.observation_space, gym.spaces.Dict)
            or "novice_logits" not in self.observation_space.spaces
        ):
            raise ConfigError(
                f"policy {config.name!r} is a coordinator; set train_novice and train_expert to agent checkpoints"
            )

    def setup(self, compute: Compute) -> CoordinationPolicy:
        """Nothing to place: the decisions are cheap CPU arithmetic."""
        return self

    def reset(self, done: np.ndarray) -> None:
        """Stateless: nothing to reset."""

    def train(self) -> None:
        """No training mode: nothing is learned by gradient."""

    def eval(self) -> None:
        """No evaluation mode: nothing is learned by gradient."""

    def get_params(self) -> dict[str, Any]:
        if self.param is None:
            return {}
        return {self.param: torch.tensor(float(getattr(self.config, self.param)), dtype=torch.float64)}

    def set_params(self, params: dict[str, Any]) -> None:
        expected = [] if self.param is None else [self.param]
        if sorted(params) != expected:
            raise CheckpointError(
                f"parameters {sorted(params)} do not fit policy {self.config.name!r} (expects {expected}); "
                "was the checkpoint saved from another policy?"
            )
        if self.param is not None:
            setattr(self.config, self.param, float(params[self.param]))

    def num_candidates(self) -> int:
        """How many values of `param` calibration tries."""
        return 0

    def candidates(self, env: gym.vector.VectorEnv, rollout_episodes: int, seed: int) -> tuple[list[float], int]:
        """Values of `param` to calibrate over, and the env steps spent finding them."""
        return [], 0


@dataclass
class AlwaysPolicyConfig:
    """`agent` acts at every step: `novice` or `expert`."""

    name: str = "always"
    agent: str = checked("novice", choices=("novice", "expert"))


@POLICIES.register("always")
class AlwaysPolicy(CoordinationPolicy):
    config_cls = AlwaysPolicyConfig

    def act(self, obs: Any, temperature: float = 1.0, return_model_output: bool = False) -> torch.Tensor:
        agent = EXPERT if self.config.agent == "expert" else NOVICE
        return torch.full((len(obs["novice_logits"]),), agent, dtype=torch.long)


@dataclass
class RandomPolicyConfig:
    """Ask the expert with probability `prob`; calibration tries each of `candidates`."""

    name: str = "random"
    prob: float = checked(0.5, ge=0, le=1)
    candidates: list[float] = checked(
        factory=lambda: [round(0.1 * i, 1) for i in range(11)], nonempty=True, each=Rule(ge=0, le=1)
    )


@POLICIES.register("random")
class RandomPolicy(CoordinationPolicy):
    config_cls = RandomPolicyConfig
    param = "prob"

    def act(self, obs: Any, temperature: float = 1.0, return_model_output: bool = False) -> torch.Tensor:
        return (torch.rand(len(obs["novice_logits"])) < self.config.prob).long()

    def num_candidates(self) -> int:
        return len(self.config.candidates)

    def candidates(self, env: gym.vector.VectorEnv, rollout_episodes: int, seed: int) -> tuple[list[float], int]:
        return [float(p) for p in self.config.candidates], 0


@dataclass
class LogitPolicyConfig:
    """Ask the expert when `score` of the novice's logits is below `threshold`.

    Calibration tries the `percentiles` of the scores the novice produces playing alone on the
    training split: percentile q asks on about q% of the novice's own steps.
    """

    name: str = "logit"
    score: str = checked("max_prob", choices=tuple(SCORES))
    threshold: float = checked(0.0)
    percentiles: list[float] = checked(
        factory=lambda: [10.0 * i for i in range(11)], nonempty=True, each=Rule(ge=0, le=100)
    )


@POLICIES.register("logit")
class LogitPolicy(CoordinationPolicy):
    config_cls = LogitPolicyConfig
    param = "threshold"

    def scores(self, obs: Any) -> torch.Tensor:
        return SCORES[self.config.score](torch.as_tensor(obs["novice_logits"]).float())

    def act(self, obs: Any, temperature: float = 1.0, return_model_output: bool = False) -> torch.Tensor:
        return (self.scores(obs) < self.config.threshold).long()

    def num_candidates(self) -> int:
        return len(self.config.percentiles)

    def candidates(self, env: gym.vector.VectorEnv, rollout_episodes: int, seed: int) -> tuple[list[float], int]:
        """Percentiles of the novice's scores over `rollout_episodes` complete episodes, the novice acting.

        Only whole episodes count, with a fixed quota per env (as in evaluation), so the scores are
        not biased towards the starts of episodes or towards short episodes.
        """
        obs, _ = env.reset(seed=seed)
        novice = np.full(env.num_envs, NOVICE)
        quotas, counts = episode_quotas(rollout_episodes, env.num_envs), np.zeros(env.num_envs, dtype=np.int64)
        current: list[list[np.ndarray]] = [[] for _ in range(env.num_envs)]
        pooled, steps = [], 0
        while (counts < quotas).any():
            scores = self.scores(obs).numpy()
            for i, score in enumerate(scores):
                current[i].append(score)
            obs, _, terminated, truncated, _ = env.step(novice)
            steps += env.num_envs
            for i in np.flatnonzero(terminated | truncated):
                if counts[i] < quotas[i]:
                    pooled.extend(current[i])
                    counts[i] += 1
                current[i] = []
        values = np.percentile(np.asarray(pooled), self.config.percentiles)
        return [float(v) for v in values], steps


@dataclass
class CalibrateConfig(AlgorithmConfig):
    """Calibration of a baseline coordinator on the validation split `split`.

    Each candidate is evaluated over `num_episodes` episodes on `num_envs` envs, and each
    episode's base reward, expert steps and switches are kept, so the choice can be made again at
    any other cost weight by re-pricing them (`reselect`). `rollout_episodes` complete episodes of
    novice play on the training split give the logit thresholds. `split: null` = the run's
    `coordination.selection_split`. An iteration
    evaluates one candidate, and the run saves after each (`save_freq`).
    """

    name: str = "calibrate"
    save_freq: int = checked(1, ge=0)
    # Checked against env.splits with the whole run config (duo_ai.config).
    split: str | None = None
    num_episodes: int = checked(64, ge=1)
    num_envs: int = checked(32, ge=1)
    rollout_episodes: int = checked(64, ge=1)


@ALGORITHMS.register("calibrate")
class Calibrate(Algorithm):
    """Sets up a baseline coordinator without gradient steps: the best candidate on validation.

    Iteration 0 lists the candidates (for `logit`, percentiles of the novice's scores from a
    rollout on the training env); iteration k evaluates candidate k on the validation split, on
    the same levels and seed for every candidate; the last one keeps the best. A policy with
    nothing to calibrate (`always`) takes no iterations.
    """

    config_cls = CalibrateConfig

    def __init__(
        self,
        config: CalibrateConfig,
        policy: Policy,
        env: gym.vector.VectorEnv,
        seed: int = 0,
        make_env: EnvFactory | None = None,
        ctx: ProcessContext | None = None,
    ) -> None:
        if not isinstance(policy, CoordinationPolicy):
            raise ConfigError(
                f"algorithm calibrate sets up baseline coordinators ({', '.join(BASELINES)}), "
                f"not {type(policy).__name__}; train a ppo policy with algorithm.name=ppo"
            )
        super().__init__(config, policy, env, seed, make_env, ctx)
        self.num_iterations = 0 if policy.param is None else 1 + policy.num_candidates()
        # The sweep as it runs: candidates, their validation rewards and expert fractions, the choice.
        self.calibration: dict[str, Any] = {"param": policy.param, "split": config.split}
        self.val_env: gym.vector.VectorEnv | None = None

    def train_iteration(self) -> dict[str, float]:
        param, cfg, sweep = self.policy.param, self.config, self.calibration
        if self.iteration == 0:
            sweep["candidates"], steps = self.policy.candidates(self.env, cfg.rollout_episodes, self.seed)
            sweep["reward_mean"], sweep["expert_fraction"], sweep["episodes"] = [], [], []
            self.global_step += steps
            self.iteration += 1
            return {"calibrate/num_candidates": float(len(sweep["candidates"]))}

        value = sweep["candidates"][self.iteration - 1]
        if self.val_env is None:
            self.val_env = self.make_env(cfg.split, min(cfg.num_envs, cfg.num_episodes))
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
    its episodes at every weight: re-pricing them (base reward - (weight x expert steps +
    switch_weight x switches) x base_penalty) gives exactly what calibrating at `weight` gives.
    """
    rewards = [
        np.mean(
            np.asarray(ep["base_reward"])
            - (weight * np.asarray(ep["expert_steps"]) + switch_weight * np.asarray(ep["switches"])) * base_penalty
        )
        for ep in calibration["episodes"]
    ]
    return calibration["candidates"][int(np.argmax(rewards))]


BASELINES = ("always", "random", "logit")
