"""The abstract policy every agent and coordinator implements."""

from __future__ import annotations

import abc
from typing import Any

import numpy as np

from duo_ai.core.compute import Compute


class Policy(abc.ABC):
    """Maps observations to actions for a batch of environments.

    `config_cls` names the dataclass that configures the policy, so a config section with
    `name: <policy>` can be validated before the policy is built.
    """

    config_cls: type

    @abc.abstractmethod
    def setup(self, compute: Compute) -> Policy:
        """Place the policy on `compute` (device, layout, compilation) before it acts; returns the policy."""

    @abc.abstractmethod
    def reset(self, done: np.ndarray) -> None:
        """Clear per-episode state for the environments where `done` is True."""

    @abc.abstractmethod
    def act(self, obs: Any, temperature: float = 1.0, return_model_output: bool = False) -> Any:
        """Choose actions; temperature 0 means greedy (argmax)."""

    @abc.abstractmethod
    def get_params(self) -> dict[str, Any]:
        """The learnable state as a state dict (tensors only)."""

    @abc.abstractmethod
    def set_params(self, params: dict[str, Any]) -> None:
        """Load a state dict produced by `get_params`."""

    @abc.abstractmethod
    def train(self) -> None:
        """Switch to training mode."""

    @abc.abstractmethod
    def eval(self) -> None:
        """Switch to evaluation mode."""
