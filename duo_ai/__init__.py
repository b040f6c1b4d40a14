"""duo-ai: PPO agents and novice/expert coordination on Procgen."""

__version__ = "0.1.0"
