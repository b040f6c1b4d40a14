"""Process identity under `torchrun`, so data-parallel training can be added without restructuring.

Each process gets its own seed and environments; only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class ProcessContext:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @classmethod
    def from_env(cls) -> ProcessContext:
        return cls(
            rank=int(os.environ.get("RANK", 0)),
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
            world_size=int(os.environ.get("WORLD_SIZE", 1)),
        )

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def seed(self, base_seed: int) -> int:
        """A distinct seed per process, so processes explore different levels and actions."""
        return base_seed + 1_000_003 * self.rank
