"""Baseline coordinators, and `calibrate`, the algorithm that sets them up.

- `always`: the same agent acts at every step (`agent: novice` or `expert`).
- `random`: ask the expert with probability `prob`.
- `logit`: ask the expert when a confidence score of the novice's logits falls below `threshold`.
- `every_k`: ask the expert at steps 0, k, 2k, ... of each episode.
- `ood`: ask the expert when an outlier detector, fitted on the novice's features over its own
  training levels, scores the current state above `threshold`.

None has a network. The one parameter of `random` (prob), `logit` and `ood` (threshold) and
`every_k` (k) is chosen by `calibrate`: every candidate is evaluated on a validation split with
the same levels and seed, and the one with the best mean reward (costs included) is kept. The
checkpoint stores the chosen value as a tensor in `model_state_dict` and the whole sweep under
`calibration` (`ood` also its fitted states).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from duo_ai.coordination.config import CoordinationConfig
from duo_ai.coordination.env import EXPERT, NOVICE, CoordinationEnv
from duo_ai.core.algorithm import Algorithm, AlgorithmConfig, EnvFactory
from duo_ai.core.checks import Rule, checked
from duo_ai.core.compute import Compute
from duo_ai.core.distributed import ProcessContext
from duo_ai.core.errors import CheckpointError, ConfigError
from duo_ai.core.policy import Policy
from duo_ai.core.registry import ALGORITHMS, POLICIES
from duo_ai.envs import EnvConfig, check_split_name, make_env
from duo_ai.evaluation import EvalResult, episode_quotas, evaluate
from duo_ai.policies.ppo import PPOPolicy, spaces_of

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


def novice_rollout(
    env: gym.vector.VectorEnv, num_episodes: int, seed: int, per_state: Callable[[Any], np.ndarray]
) -> tuple[np.ndarray, int]:
    """`per_state(obs)` (one row per env) over every state of `num_episodes` complete episodes of
    the novice acting alone in coordination env `env`, stacked; and the env steps spent.

    Only whole episodes count, with a fixed quota per env (as in evaluation), so the states are
    not biased towards the starts of episodes or towards short episodes.
    """
    obs, _ = env.reset(seed=seed)
    novice = np.full(env.num_envs, NOVICE)
    quotas, counts = episode_quotas(num_episodes, env.num_envs), np.zeros(env.num_envs, dtype=np.int64)
    current: list[list[np.ndarray]] = [[] for _ in range(env.num_envs)]
    pooled, steps = [], 0
    while (counts < quotas).any():
        for i, row in enumerate(np.asarray(per_state(obs))):
            current[i].append(row)
        obs, _, terminated, truncated, _ = env.step(novice)
        steps += env.num_envs
        for i in np.flatnonzero(terminated | truncated):
            if counts[i] < quotas[i]:
                pooled.extend(current[i])
                counts[i] += 1
            current[i] = []
    return np.stack(pooled), steps


class CoordinationPolicy(Policy):
    """A coordinator without a network. `param` names its calibrated parameter (None: nothing to
    calibrate), and `param_type` is the type of its config field."""

    param: str | None = None
    param_type: type = float

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
            setattr(self.config, self.param, self.param_type(float(params[self.param])))

    def check_env(self, env: gym.vector.VectorEnv, split: str) -> None:
        """Refuse, before any work, the env of `split` if this coordinator cannot act in it; most can."""

    def fit(self, env: gym.vector.VectorEnv, seed: int) -> int:
        """Learn what the coordinator needs before its candidates are listed (`env`: the run's
        training env); returns the env steps spent. Most learn nothing."""
        return 0

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
        """Percentiles of the novice's scores over `rollout_episodes` complete episodes, the novice acting."""
        return percentile_candidates(env, rollout_episodes, seed, self.scores, self.config.percentiles)


def percentile_candidates(
    env: gym.vector.VectorEnv,
    rollout_episodes: int,
    seed: int,
    scores: Callable[[Any], np.ndarray],
    percentiles: list[float],
) -> tuple[list[float], int]:
    """`percentiles` of the `scores` of the novice's own states over `rollout_episodes` complete episodes."""
    values, steps = novice_rollout(env, rollout_episodes, seed, scores)
    return [float(v) for v in np.percentile(values, percentiles)], steps


@dataclass
class EveryKPolicyConfig:
    """Ask the expert at steps 0, k, 2k, ... of each episode (k = 1: always); calibration tries each of `candidates`."""

    name: str = "every_k"
    k: int = checked(4, ge=1)
    candidates: list[int] = checked(factory=lambda: [1, 2, 3, 4, 6, 8, 12, 16, 24, 32], nonempty=True, each=Rule(ge=1))


@POLICIES.register("every_k")
class EveryKPolicy(CoordinationPolicy):
    config_cls = EveryKPolicyConfig
    param = "k"
    param_type = int

    def __init__(self, config: EveryKPolicyConfig, env: gym.vector.VectorEnv) -> None:
        super().__init__(config, env)
        self.steps = np.zeros(env.num_envs, dtype=np.int64)  # each env's step within its episode

    def reset(self, done: np.ndarray) -> None:
        done = np.asarray(done, dtype=bool)
        if done.shape != self.steps.shape:  # another batch of envs: evaluation starts by resetting them all
            self.steps = np.zeros(done.shape, dtype=np.int64)
        self.steps[done] = 0

    def act(self, obs: Any, temperature: float = 1.0, return_model_output: bool = False) -> torch.Tensor:
        ask = self.steps % self.config.k == 0
        self.steps += 1
        return torch.as_tensor(ask).long()

    def num_candidates(self) -> int:
        return len(self.config.candidates)

    def candidates(self, env: gym.vector.VectorEnv, rollout_episodes: int, seed: int) -> tuple[list[float], int]:
        return [float(k) for k in self.config.candidates], 0


def _knn(config: OODPolicyConfig) -> Any:
    from pyod.models.knn import KNN  # pyod takes seconds to import: only when a detector is built

    return KNN(n_neighbors=config.n_neighbors)


def _lof(config: OODPolicyConfig) -> Any:
    from pyod.models.lof import LOF

    return LOF(n_neighbors=config.n_neighbors)


def _iforest(config: OODPolicyConfig) -> Any:
    from pyod.models.iforest import IForest

    return IForest(random_state=0)  # fixed: a refit on the same states scores the same


# pyod outlier detectors by name (ECOD is left out: it re-ranks against every fitted state each
# step, ~1 s per batch of 64 over 4,000 states on a CPU).
DETECTORS: dict[str, Callable[[OODPolicyConfig], Any]] = {"knn": _knn, "lof": _lof, "iforest": _iforest}
OOD_FEATURES = ("hidden", "dist", "hidden_dist")


@dataclass
class OODPolicyConfig:
    """Ask the expert when `detector`'s outlier score of the novice's `features` is above `threshold`.

    `features`: the novice's `hidden` features, `dist` (the softmax of its logits) or both. The
    detector is fitted (by calibration) on them over `fit_episodes` complete episodes of the novice
    playing alone on its own training levels, at most `max_fit_states` states (evenly spaced);
    `n_neighbors` is knn's and lof's. Calibration tries the `percentiles` of the scores of the
    novice's states on the run's training split: percentile q asks on about (100 - q)% of them.
    """

    name: str = "ood"
    detector: str = checked("knn", choices=tuple(DETECTORS))
    features: str = checked("hidden", choices=OOD_FEATURES)
    n_neighbors: int = checked(10, ge=1)
    fit_episodes: int = checked(64, ge=1)
    max_fit_states: int = checked(4000, ge=2)
    threshold: float = checked(0.0)
    percentiles: list[float] = checked(
        factory=lambda: [10.0 * i for i in range(11)], nonempty=True, each=Rule(ge=0, le=100)
    )


def novice_fingerprint(novice: PPOPolicy) -> torch.Tensor:
    """sha256 of the novice's weights (names, dtypes, shapes, bytes) as 32 uint8: which novice a fit is of."""
    digest = hashlib.sha256()
    for name, tensor in sorted(novice.get_params().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return torch.tensor(list(digest.digest()), dtype=torch.uint8)


def novice_alone(env: CoordinationEnv, num_envs: int, seed: int) -> CoordinationEnv:
    """`env`'s novice on the levels it was trained on (its checkpoint's `env` section, split `train`),
    observed as in `env`; it acts in every state (the expert's place is never used)."""
    if env.novice_env is None:
        raise CheckpointError(
            "the novice's checkpoint stores no env section, so its training levels are unknown; "
            "pass train_novice=<a checkpoint written by duo-ai train>"
        )
    try:
        config = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(EnvConfig), env.novice_env))
    except OmegaConfBaseException as e:
        raise CheckpointError(f"the novice's training env section cannot be read ({e}); retrain the novice") from None
    base = make_env(config, "train", num_envs=num_envs, seed=seed)
    try:
        return CoordinationEnv(base, env.novice, env.novice, CoordinationConfig(agent_temperature=env.temperature), 1.0)
    except BaseException:
        base.close()
        raise


@POLICIES.register("ood")
class OODPolicy(CoordinationPolicy):
    """Outlier detection over the novice's features; higher pyod scores mean more outlying, so the
    expert is asked when the score is ABOVE the threshold (asking below it inverts the method).

    Checkpoints hold the fitted states (`fit_states`, float32) and the sha256 of the novice they
    were collected from (`fitted_on`), never a pickled estimator: the detector is refitted from
    them on load (deterministically), and refuses a novice other than the one it was fitted on.
    """

    config_cls = OODPolicyConfig
    param = "threshold"
    FIT_KEYS = ("fit_states", "fitted_on")
    TEST_NOVICE_KEY = "fitted_for"

    def __init__(self, config: OODPolicyConfig, env: gym.vector.VectorEnv) -> None:
        super().__init__(config, env)
        if not isinstance(env, CoordinationEnv):
            raise ConfigError(f"policy ood needs a coordination env, got {type(env).__name__}")
        self.novice_sha256 = novice_fingerprint(env.fit_novice)  # the training split's novice
        # The novice acting at test time (the real novice in the realistic setting, else the same):
        # stored with a fit (`fitted_for`), so a checkpoint refuses a pair it was not calibrated with.
        self.test_novice_sha256 = novice_fingerprint(env.test_novice)
        self.fit_states: torch.Tensor | None = None
        self.fitted_on: torch.Tensor | None = None
        self.detector: Any = None

    def features(self, obs: Any) -> np.ndarray:
        parts = self.config.features.split("_")
        found = {
            "hidden": lambda: np.asarray(obs["novice_hidden"], dtype=np.float32),
            "dist": lambda: torch.as_tensor(obs["novice_logits"]).float().softmax(-1).numpy(),
        }
        return np.concatenate([found[part]() for part in parts], axis=-1)

    def scores(self, obs: Any) -> np.ndarray:
        """The detector's outlier score of each env's state (higher = more outlying)."""
        if self.detector is None:
            raise ConfigError("this ood coordinator has no fitted detector; set it up with algorithm.name=calibrate")
        return self.detector.decision_function(self.features(obs))

    def act(self, obs: Any, temperature: float = 1.0, return_model_output: bool = False) -> torch.Tensor:
        return torch.as_tensor(self.scores(obs) > self.config.threshold).long()

    def fit(self, env: gym.vector.VectorEnv, seed: int) -> int:
        """Fit the detector on the novice's states over its own training levels; returns the steps spent."""
        cfg = self.config
        alone = novice_alone(env, min(cfg.fit_episodes, env.num_envs), seed)
        try:
            states, steps = novice_rollout(alone, cfg.fit_episodes, seed, self.features)
        finally:
            alone.close()
        if len(states) > cfg.max_fit_states:
            states = states[np.linspace(0, len(states) - 1, cfg.max_fit_states).round().astype(np.int64)]
        if cfg.detector in ("knn", "lof") and len(states) <= cfg.n_neighbors:
            raise ConfigError(
                f"policy.fit_episodes={cfg.fit_episodes} gave {len(states)} novice states, too few for "
                f"policy.n_neighbors={cfg.n_neighbors}; raise fit_episodes or lower n_neighbors"
            )
        self.set_fit(torch.from_numpy(np.ascontiguousarray(states, dtype=np.float32)), novice_fingerprint(env.novice))
        return steps

    def set_fit(self, states: torch.Tensor, fitted_on: torch.Tensor) -> None:
        """Take fitted states of the novice with sha256 `fitted_on` and refit the detector on them."""
        fitted_on = fitted_on.to(torch.uint8)
        self.check_novice(fitted_on, self.novice_sha256, "train_novice")
        self.fit_states, self.fitted_on = states.float().contiguous(), fitted_on
        self.detector = DETECTORS[self.config.detector](self.config).fit(self.fit_states.numpy())

    def check_env(self, env: gym.vector.VectorEnv, split: str) -> None:
        """The novice acting in `split` must be the training split's, on which the detector is fitted."""
        if not torch.equal(novice_fingerprint(env.novice), self.novice_sha256):
            raise ConfigError(
                f"policy ood is fitted on the training split's novice, but another one (test_novice) acts in split "
                f"{split!r}; leave test_novice unset or give it train_novice's checkpoint"
            )

    def get_params(self) -> dict[str, Any]:
        params = super().get_params()
        if self.fit_states is not None:
            params.update(fit_states=self.fit_states.clone(), fitted_on=self.fitted_on.clone())
            params[self.TEST_NOVICE_KEY] = self.test_novice_sha256.clone()
        return params

    def set_params(self, params: dict[str, Any]) -> None:
        """The threshold alone (calibration, re-pricing) or with a whole fit (a checkpoint)."""
        fit = {k: params[k] for k in self.FIT_KEYS if k in params}
        if fit and len(fit) != len(self.FIT_KEYS):
            raise CheckpointError(f"ood parameters {sorted(params)} hold part of a fit; a fit is {list(self.FIT_KEYS)}")
        fitted_for = params.get(self.TEST_NOVICE_KEY)
        super().set_params({k: v for k, v in params.items() if k not in fit and k != self.TEST_NOVICE_KEY})
        if fit:
            self.set_fit(fit["fit_states"], fit["fitted_on"])
        if fitted_for is not None:  # absent from checkpoints written before it was stored
            self.check_novice(fitted_for.to(torch.uint8), self.test_novice_sha256, "test_novice")

    def check_novice(self, fitted: torch.Tensor, here: torch.Tensor, key: str) -> None:
        if not torch.equal(fitted, here):
            was, now = (bytes(t.tolist()).hex()[:12] for t in (fitted, here))
            raise CheckpointError(
                f"this ood coordinator was fitted on another novice ({key}: weights sha256 {was}...) than the one "
                f"acting here ({now}...); evaluate it with the train_novice/test_novice it was calibrated "
                "with, or calibrate a new one for this novice"
            )

    def num_candidates(self) -> int:
        return len(self.config.percentiles)

    def candidates(self, env: gym.vector.VectorEnv, rollout_episodes: int, seed: int) -> tuple[list[float], int]:
        """Percentiles of the detector's scores of the novice's states on the run's training split."""
        return percentile_candidates(env, rollout_episodes, seed, self.scores, self.config.percentiles)


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


BASELINES = ("always", "random", "logit", "every_k", "ood")
