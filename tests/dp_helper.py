"""Run under `torchrun --nproc-per-node 2 tests/dp_helper.py OUT_DIR [key=value ...]` by tests/test_distributed.py.

Each process builds the tiny PPO of a data-parallel run exactly as `duo-ai train` does, then:

1. (image observations only) on one fixed synthetic batch of 2P rows, takes the loss of its own
   P rows (advantages normalised with the global moments) and the all-reduced gradient; rank 0
   also takes, with no collective, the gradient of the whole 2P-row batch as one process would.
   All go to OUT_DIR/grads_*.pt, with the all-reduced gradient of advantages normalised per
   process (the mistake the moments prevent).
2. trains two iterations and writes a hash of its weights and optimizer state, its model's
   buffers, its global_step, its reward normaliser's running statistics, the last update's stats
   and the largest reward (in absolute value) its rollouts learned from to OUT_DIR/rank<r>.json.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from duo_ai.algorithms.parallel import advantage_moments
from duo_ai.algorithms.ppo import PPO, RolloutBatch
from duo_ai.build import build_run, device_name
from duo_ai.config import load_config
from duo_ai.core import distributed
from duo_ai.core.compute import resolve_device
from duo_ai.core.distributed import ProcessContext, average_gradients

TINY = [
    "env.num_envs=4",
    "env.num_threads=1",
    "num_threads=1",
    "precision=fp32",
    "algorithm.num_steps=16",
    "algorithm.num_minibatches=2",
    "algorithm.update_epochs=2",
    "evaluation.num_episodes=0",
    "distributed_timeout_s=60",
]


def synthetic_batch(rows: int, device: torch.device) -> RolloutBatch:
    """The same batch in every process: the first half's advantages centred at +1, the second's at -3."""
    g = torch.Generator().manual_seed(0)
    half = rows // 2
    advantages = torch.cat([torch.randn(half, generator=g) + 1.0, 3.0 * torch.randn(half, generator=g) - 3.0])
    batch = RolloutBatch(
        obs=torch.randint(0, 256, (rows, 3, 64, 64), dtype=torch.uint8, generator=g),
        actions=torch.randint(0, 15, (rows,), generator=g),
        logprobs=torch.full((rows,), -float(np.log(15))) + 0.1 * torch.randn(rows, generator=g),
        advantages=advantages,
        returns=torch.randn(rows, generator=g),
        values=torch.randn(rows, generator=g),
    )
    return RolloutBatch(*(t.to(device) for t in vars(batch).values()))


def gradients(algo: PPO) -> dict[str, torch.Tensor]:
    return {name: p.grad.detach().clone() for name, p in algo.policy.model.named_parameters() if p.grad is not None}


def check_gradients(algo: PPO, ctx: ProcessContext, out: Path) -> None:
    rows, device = 64, algo.compute.device
    batch = synthetic_batch(2 * rows, device)
    own = batch[torch.arange(ctx.rank * rows, (ctx.rank + 1) * rows, device=device)]
    moments = advantage_moments(own.advantages, torch.arange(rows, device=device), 1)[0]
    algo.optimizer.zero_grad(set_to_none=True)
    loss, _ = algo.minibatch_loss(own, moments)
    loss.backward()
    average_gradients(algo.policy.model.parameters(), ctx.world_size)
    torch.save(gradients(algo), out / f"grads_rank{ctx.rank}.pt")
    # The same with each process normalising by its own rows only: what the global moments fix.
    algo.optimizer.zero_grad(set_to_none=True)
    loss, _ = algo.minibatch_loss(own)
    loss.backward()
    average_gradients(algo.policy.model.parameters(), ctx.world_size)
    torch.save(gradients(algo), out / f"grads_local_moments_rank{ctx.rank}.pt")
    if ctx.is_main:  # one process over the whole batch: its own minibatch statistics, no collective
        algo.optimizer.zero_grad(set_to_none=True)
        loss, _ = algo.minibatch_loss(batch)
        loss.backward()
        torch.save(gradients(algo), out / "grads_one_process.pt")
    algo.optimizer.zero_grad(set_to_none=True)


def digest(algo: PPO) -> str:
    h = hashlib.sha256()
    for tensor in algo.policy.model.state_dict().values():
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    for state in algo.optimizer.state_dict()["state"].values():
        for value in state.values():
            h.update(torch.as_tensor(value).cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main(out: Path, overrides: list[str]) -> None:
    ctx = ProcessContext.from_env()
    config = load_config(overrides=[*TINY, *overrides])
    distributed.start(ctx, resolve_device(device_name(config, ctx)), config.distributed_timeout_s)
    try:
        parts = build_run(config, ctx, log=lambda message: None)
        algo = parts.algorithm
        initial = digest(algo)
        if not isinstance(algo.policy.observation_space, gym.spaces.Dict):  # a coordinator's are dicts
            check_gradients(algo, ctx, out)
        largest = 0.0
        for _ in range(2):
            stats = algo.train_iteration()
            largest = max(largest, algo.rollout.rewards.abs().max().item())
        normalizer = algo.normalizer.state_dict()
        record = {
            "buffers": {name: b.tolist() for name, b in algo.policy.model.named_buffers()},
            "initial": initial,
            "trained": digest(algo),
            "global_step": algo.global_step,
            "num_envs": algo.num_envs,
            "normalizer": [normalizer["mean"], normalizer["var"], normalizer["count"]],
            "stats": stats,
            "max_abs_reward": largest,
        }
        (out / f"rank{ctx.rank}.json").write_text(json.dumps(record))
        parts.close()
    finally:
        distributed.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
