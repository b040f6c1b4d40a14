"""The process's random number generators: seeding, saving and restoring them, and isolating them.

A run's randomness comes from four generators: torch (CPU and each CUDA device), numpy's global
one and Python's `random`. Exact resume saves and restores all four; work that must not shift the
training stream (periodic evaluation) runs inside `isolated_rng`.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def get_rng_state() -> dict[str, Any]:
    """Every generator's state as tensors, lists and numbers (loadable with weights_only=True)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "python": [version, list(internal), gauss_next],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


@contextlib.contextmanager
def isolated_rng(seed: int | None = None) -> Iterator[None]:
    """Run a block (seeded with `seed` if given) and then put every generator back as it was."""
    saved = get_rng_state()
    try:
        if seed is not None:
            seed_everything(seed)
        yield
    finally:
        set_rng_state(saved)


# splitmix64's constants: the golden-ratio increment and its finaliser's two multipliers.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection of uint64 that spreads every input bit over the output."""
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def counter_uniforms(key: int, counters: list[np.ndarray], size: int) -> np.ndarray:
    """Uniform numbers in (0, 1), shape [n, size]: a pure function of `key`, the n rows of `counters`
    (each an integer array of length n) and the column.

    Counter-based, like Philox: the number for (key, counters, column) is the same whoever asks and
    however many numbers were drawn before, so two runs that reach the same counters draw the same
    numbers (common random numbers), and nothing needs saving for an exact resume.
    """
    with np.errstate(over="ignore"):
        z = np.full(len(counters[0]), np.uint64(key % 2**64), dtype=np.uint64)
        for counter in counters:
            z = _mix64(z + _GOLDEN * (np.asarray(counter).astype(np.uint64) + np.uint64(1)))
        z = _mix64(z[:, None] + _GOLDEN * np.arange(1, size + 1, dtype=np.uint64))
        z = _mix64(z)
    return ((z >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53
