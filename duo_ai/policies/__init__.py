"""Policies, registered by name in `duo_ai.core.registry.POLICIES`."""

from duo_ai.policies.ppo import PPOPolicy, PPOPolicyConfig

__all__ = ["PPOPolicy", "PPOPolicyConfig"]
