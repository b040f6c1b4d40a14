"""The abstract training algorithm: what the trainer's one run loop drives.

An algorithm advances in iterations (PPO: one rollout and its update; calibration: one candidate
evaluated) until `done`. Everything it needs to continue after a restart is in `state_dict()`;
the policy's weights are saved separately by the trainer.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from duo_ai.core.checks import SectionChecks, checked
from duo_ai.core.distributed import ProcessContext
from duo_ai.core.policy import Policy

# Builds the vector env of a split with a number of copies (e.g. a validation split for calibration).
EnvFactory = Callable[[str, int], gym.vector.VectorEnv]


@dataclass
class AlgorithmConfig(SectionChecks):
    """What every algorithm's config section has: its `name` and the run loop's frequencies.

    Frequencies count iterations; 0 turns periodic logging/saving/evaluation off (the run still
    saves and evaluates at its end). A subclass states its rules that span sections in the
    `SectionChecks` hooks.
    """

    name: str = ""
    log_freq: int = checked(1, ge=0)
    save_freq: int = checked(10, ge=0)
    # Evaluate on evaluation.splits every eval_freq iterations (0 = only at the end).
    eval_freq: int = checked(0, ge=0)


class Algorithm(abc.ABC):
    """Trains `policy` on `env`. `config_cls` is the dataclass of its config section.

    `global_step` counts environment steps consumed (by all processes of a data-parallel run),
    `iteration` finished iterations, and `num_iterations` the iterations a run takes.

    An algorithm with `data_parallel = True` can run as one of `ctx.world_size` processes under
    torchrun, each on its own share of the environments; the others refuse to.
    """

    config_cls: type[AlgorithmConfig]
    data_parallel: bool = False

    def __init__(
        self,
        config: Any,
        policy: Policy,
        env: gym.vector.VectorEnv,
        seed: int,
        make_env: EnvFactory,
        ctx: ProcessContext | None = None,
    ):
        self.config = config
        self.policy = policy
        self.env = env
        self.seed = seed
        self.make_env = make_env
        self.ctx = ctx or ProcessContext()
        self.global_step = 0
        self.iteration = 0
        self.num_iterations = 0

    @property
    def done(self) -> bool:
        return self.iteration >= self.num_iterations

    @abc.abstractmethod
    def train_iteration(self) -> dict[str, float]:
        """Run one iteration; returns the stats to log (TensorBoard names such as `loss/policy`)."""

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything besides the policy's weights that resuming needs (tensors, numbers, lists, dicts).

        Called between iterations; the result is a snapshot that later iterations must not change.
        """

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""

    def process_state_dict(self) -> dict[str, Any]:
        """The part of `state_dict()` that is this process's own in a data-parallel run (its
        environments, its episodes); the rest is the same in every process. A checkpoint of such
        a run holds each process's part under `rank_states`."""
        return {}

    def shared_state_dict(self) -> dict[str, Any]:
        """`state_dict()` without what `process_state_dict()` holds; override where the process's
        part is costly to take (a data-parallel checkpoint takes it once, under `rank_states`)."""
        state = self.state_dict()
        for key in self.process_state_dict():
            state.pop(key, None)
        return state

    def close(self) -> None:  # noqa: B027  (optional hook: most algorithms open nothing themselves)
        """Release what the algorithm opened itself (e.g. validation environments)."""
