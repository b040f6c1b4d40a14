"""`logit`: ask the expert when a confidence score of the novice's logits falls below `threshold`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import torch

from duo_ai.coordination.baselines.base import CoordinationPolicy
from duo_ai.coordination.baselines.rollout import percentile_candidates
from duo_ai.core.checks import Rule, checked
from duo_ai.core.registry import POLICIES


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
