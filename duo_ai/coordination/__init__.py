"""Coordination: a coordinator decides at every step whether a novice or an expert agent acts.

- `config`: the `coordination.` settings and the novice/expert checkpoint keys.
- `agents`: loading the novice and expert `PPOPolicy` from `duo-ai train` checkpoints.
- `env`: `CoordinationEnv`, the vector env the coordinator acts in, and its per-run builder.
- `penalty`: measuring (and caching) the expert's reward per step, the unit of the query cost.
- `baselines/`: always / random / logit-threshold / every-k / ood coordinators (a module each) and
  their `calibrate` algorithm.
- `sweep`: re-pricing episodes at another query-cost weight, rewards at several weights and the area
  under that curve.

This module imports nothing heavy, so `duo_ai.core.config` can import the config dataclass.
"""
