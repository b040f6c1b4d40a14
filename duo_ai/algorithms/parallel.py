"""What a data-parallel PPO update reduces across processes, so it equals one process with every env.

Each process holds the rollout of its own envs (B local rows). Gradients are averaged
(`core.distributed.average_gradients`); a minibatch's advantages are normalised by the mean and std
of that minibatch over all processes (`advantage_moments`); the logged losses and the explained
variance are those of the whole global batch (`global_update_stats`), a minibatch's approx_kl
that `target_kl` checks is its mean over the processes (`global_mean`), and the episode statistics
those of every process's recent episodes (`episode_stats`). Every reduction is a sum, in
float64, of counts, sums and sums of squares.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from duo_ai.core.distributed import all_reduce_host, all_reduce_sum_


def advantage_moments(advantages: torch.Tensor, order: torch.Tensor, num_minibatches: int) -> torch.Tensor:
    """[num_minibatches, 2]: the mean and (unbiased) std of each minibatch of this epoch's `order`,
    taken over that minibatch in every process. One all-reduce per epoch, no host sync."""
    adv = advantages[order].view(num_minibatches, -1).double()
    count = torch.full((num_minibatches,), adv.shape[1], dtype=torch.float64, device=adv.device)
    total = all_reduce_sum_(torch.stack([count, adv.sum(1), adv.square().sum(1)], dim=1), "the advantage statistics")
    n, s, q = total.unbind(1)
    mean = s / n
    var = ((q - s * mean) / (n - 1)).clamp(min=0)
    return torch.stack([mean, var.sqrt()], dim=1).float()


def global_mean(value: torch.Tensor, world_size: int, what: str) -> torch.Tensor:
    """The mean over every process of a scalar each holds (one all-reduce), the same in all of them."""
    return all_reduce_sum_(value.reshape(1).to(torch.float64, copy=True), what)[0] / world_size


def global_update_stats(
    means: torch.Tensor, returns: torch.Tensor, values: torch.Tensor, world_size: int
) -> torch.Tensor:
    """[policy, value, entropy, approx_kl, clipfrac, explained variance] over all processes.

    `means` are this process's per-minibatch means of the first five; the explained variance of
    the returns by the values is computed over every process's rollout.
    """
    r, res = returns.double(), (returns - values).double()
    n = torch.full((), r.numel(), dtype=torch.float64, device=r.device)  # a fill, not a host-to-device copy
    moments = torch.stack([n, r.sum(), r.square().sum(), res.sum(), res.square().sum()])
    total = all_reduce_sum_(torch.cat([means.double(), moments]), "the update statistics")
    n, sr, qr, sres, qres = total[5:].unbind()
    var_returns = (qr - sr * sr / n) / (n - 1)
    var_residual = (qres - sres * sres / n) / (n - 1)
    explained = torch.where(var_returns > 0, 1 - var_residual / var_returns, torch.nan)
    return torch.cat([total[:5] / world_size, explained[None]]).float()


def episode_stats(episodes: Iterable[dict[str, float]], keys: tuple[str, ...], distributed: bool) -> np.ndarray:
    """[sum of each key over the episodes that have it, ..., how many have it, ...] for `keys`,
    over every process's recent episodes when `distributed` (one all-reduce)."""
    episodes = list(episodes)
    sums = [sum(e[k] for e in episodes if k in e) for k in keys]
    counts = [sum(k in e for e in episodes) for k in keys]
    local = np.asarray(sums + counts, dtype=np.float64)
    return all_reduce_host(local, "the episode statistics") if distributed else local
