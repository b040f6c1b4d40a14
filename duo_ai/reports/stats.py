"""Point estimates and bootstrap intervals over a few seeds (numpy only).

With 3-10 seeds a normal-theory interval is unreliable, so the interval is a percentile
bootstrap: resample the seeds with replacement (2000 times, seeded, so the same runs give the
same numbers), take the statistic of each resample, and report its 2.5th and 97.5th percentiles.
The statistic is the mean or the interquartile mean (IQM, the mean of the middle 50%: robust to
one outlying seed, as recommended by Agarwal et al., 2021, "Deep RL at the edge of the
statistical precipice").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

AGGREGATES = ("mean", "iqm")


def iqm(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Interquartile mean along `axis`: drop the lowest and highest `floor(n / 4)` values, average the rest.

    The same trimming as `scipy.stats.trim_mean(values, 0.25)`; with fewer than 4 values it is the mean.
    """
    values = np.sort(np.asarray(values, dtype=np.float64), axis=axis)
    n = values.shape[axis]
    cut = int(0.25 * n)
    return np.take(values, np.arange(cut, n - cut), axis=axis).mean(axis=axis)


def statistic(name: str):
    if name not in AGGREGATES:
        raise ValueError(f"unknown aggregate {name!r}; choose one of {AGGREGATES}")
    return iqm if name == "iqm" else (lambda values, axis=-1: np.mean(values, axis=axis))


@dataclass
class Interval:
    """A point estimate with a 95% interval (`low == high == estimate` for a single value)."""

    estimate: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "n": self.n}


def bootstrap_ci(
    values: np.ndarray,
    aggregate: str = "mean",
    num_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Estimate and percentile-bootstrap interval of `aggregate` over the last axis of `values`.

    `values` is [n] (one estimate) or [..., n] (one per leading index, e.g. per step, all with the
    same resampled seed indices). Returns (estimate, low, high), each of the leading shape.
    """
    values = np.asarray(values, dtype=np.float64)
    stat = statistic(aggregate)
    n = values.shape[-1]
    if n < 1:
        raise ValueError("bootstrap_ci needs at least one value")
    estimate = stat(values, axis=-1)
    if n == 1:
        return estimate, estimate.copy(), estimate.copy()
    index = np.random.default_rng(seed).integers(0, n, size=(num_resamples, n))
    resampled = stat(values[..., index], axis=-1)  # [..., num_resamples]
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(resampled, [tail, 100 - tail], axis=-1)
    return estimate, low, high


def interval(values: list[float] | np.ndarray, aggregate: str = "mean", seed: int = 0) -> Interval:
    """`bootstrap_ci` of a flat list of per-seed values, as an `Interval`."""
    estimate, low, high = bootstrap_ci(np.asarray(values, dtype=np.float64), aggregate, seed=seed)
    return Interval(float(estimate), float(low), float(high), len(values))
