"""Training algorithms, registered by name in `duo_ai.core.registry.ALGORITHMS`."""

from duo_ai.algorithms.ppo import PPO, PPOConfig, compute_gae

__all__ = ["PPO", "PPOConfig", "compute_gae"]
