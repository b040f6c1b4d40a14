"""Baseline coordinators, and `calibrate`, the algorithm that sets them up (one module each).

- `base`: `CoordinationPolicy`, what they share, and the hooks `calibrate` calls;
- `blind`: `always`, `random` and `every_k`, which never look at the state;
- `logit`: ask when a confidence score of the novice's logits falls below a threshold;
- `ood`: ask when a pyod outlier detector (`detectors`: any, by name) scores the state above a threshold;
- `rollout`: the novice's own states, from which `logit` and `ood` take their candidate thresholds;
- `calibrate`: the best candidate on validation, and `reselect`, the choice at another cost weight.

Importing this package registers every baseline in `POLICIES` and `calibrate` in `ALGORITHMS`.
"""

from duo_ai.coordination.baselines.base import CoordinationPolicy
from duo_ai.coordination.baselines.blind import (
    AlwaysPolicy,
    AlwaysPolicyConfig,
    EveryKPolicy,
    RandomPolicy,
    RandomPolicyConfig,
)
from duo_ai.coordination.baselines.calibrate import CALIBRATION_SEED_OFFSET, Calibrate, reselect
from duo_ai.coordination.baselines.logit import SCORES, LogitPolicy
from duo_ai.coordination.baselines.ood import OODPolicy, novice_fingerprint

__all__ = [
    "CALIBRATION_SEED_OFFSET",
    "SCORES",
    "AlwaysPolicy",
    "AlwaysPolicyConfig",
    "Calibrate",
    "CoordinationPolicy",
    "EveryKPolicy",
    "LogitPolicy",
    "OODPolicy",
    "RandomPolicy",
    "RandomPolicyConfig",
    "novice_fingerprint",
    "reselect",
]
