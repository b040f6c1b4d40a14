"""`ood`: ask the expert when an outlier detector, fitted on the novice's features over its own
training levels, scores the current state above `threshold`.

Checkpoints hold the fitted states (`fit_states`, float32) and the sha256 of the novice they were
collected from (`fitted_on`), never a pickled estimator: they load with `weights_only=True`, and
the detector is refitted from the states on load (deterministically), whichever pyod detector it is.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from duo_ai.coordination.baselines.base import CoordinationPolicy
from duo_ai.coordination.baselines.detectors import (
    ALLOWED,
    build_detector,
    detector_class,
    is_detector_name,
    takes_neighbors,
)
from duo_ai.coordination.baselines.rollout import novice_rollout, percentile_candidates
from duo_ai.coordination.config import CoordinationConfig
from duo_ai.coordination.env import CoordinationEnv
from duo_ai.core.checks import Rule, checked
from duo_ai.core.errors import CheckpointError, ConfigError
from duo_ai.core.registry import POLICIES
from duo_ai.core.rng import isolated_rng
from duo_ai.envs import EnvConfig, make_env
from duo_ai.policies.ppo import PPOPolicy

OOD_FEATURES = ("hidden", "dist", "hidden_dist")


@dataclass
class OODPolicyConfig:
    """Ask the expert when `detector`'s outlier score of the novice's `features` is above `threshold`.

    `detector`: any pyod detector, by its module in pyod.models (`knn`, `lof`, `iforest`, `ecod`,
    `deep_svdd`, ...; ecod re-ranks against every fitted state at each step, slow on a CPU).
    `features`: the novice's `hidden` features, `dist` (the softmax of its logits) or both. The
    detector is fitted (by calibration) on them over `fit_episodes` complete episodes of the novice
    playing alone on its own training levels, at most `max_fit_states` states (evenly spaced);
    `n_neighbors` is for detectors that take it (knn, lof, ...). Calibration tries the `percentiles`
    of the scores of the novice's states on the run's training split: percentile q asks on about
    (100 - q)% of them.
    """

    name: str = "ood"
    detector: str = checked("knn", test=is_detector_name, allowed=ALLOWED)
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

    The detector refuses a novice other than the one it was fitted on.
    """

    config_cls = OODPolicyConfig
    param = "threshold"
    FIT_KEYS = ("fit_states", "fitted_on")
    TEST_NOVICE_KEY = "fitted_for"

    def __init__(self, config: OODPolicyConfig, env: gym.vector.VectorEnv) -> None:
        super().__init__(config, env)
        if not isinstance(env, CoordinationEnv):
            raise ConfigError(f"policy ood needs a coordination env, got {type(env).__name__}")
        self.detector_cls = detector_class(config.detector)
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
        if takes_neighbors(self.detector_cls) and len(states) <= cfg.n_neighbors:
            raise ConfigError(
                f"policy.fit_episodes={cfg.fit_episodes} gave {len(states)} novice states, too few for "
                f"policy.n_neighbors={cfg.n_neighbors}; raise fit_episodes or lower n_neighbors"
            )
        self.set_fit(torch.from_numpy(np.ascontiguousarray(states, dtype=np.float32)), novice_fingerprint(env.novice))
        return steps

    def set_fit(self, states: torch.Tensor, fitted_on: torch.Tensor) -> None:
        """Take fitted states of the novice with sha256 `fitted_on` and refit the detector on them
        (its random streams seeded and then put back: a refit scores as the fit did)."""
        fitted_on = fitted_on.to(torch.uint8)
        self.check_novice(fitted_on, self.novice_sha256, "train_novice")
        self.fit_states, self.fitted_on = states.float().contiguous(), fitted_on
        with isolated_rng(0):
            detector = build_detector(self.detector_cls, self.config.n_neighbors, self.fit_states.shape[1])
            self.detector = detector.fit(self.fit_states.numpy())

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
