"""Proximal Policy Optimisation (Schulman et al. 2017) with the Procgen recipe.

One iteration, in the order `PPO.train_iteration` runs it:

1. `collect_rollout`: step the N envs for T steps with the current policy, filling the [T, N]
   buffers `obs`, `actions`, `logprobs`, `rewards`, `dones`, `values`;
2. `compute_advantages`: GAE over the rollout, bootstrapped with V of the next observation;
3. `update`: `update_epochs` passes over B = T x N rows in shuffled minibatches of the clipped
   surrogate loss, one optimizer step each.

Names follow CleanRL's `ppo.py`. A time-limit truncation is not a termination: its last reward
gets `gamma * V(final observation)` added, so the cut-off future is bootstrapped, not zeroed.
"""

from __future__ import annotations

import copy
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from duo_ai.algorithms.normalize import ReturnNormalizer
from duo_ai.algorithms.storage import ObsBuffer, index_obs, stack_obs
from duo_ai.core.algorithm import Algorithm, AlgorithmConfig, EnvFactory
from duo_ai.core.checks import checked
from duo_ai.core.errors import ConfigError
from duo_ai.core.registry import ALGORITHMS
from duo_ai.policies.ppo import PPOPolicy, log_prob_and_entropy


@dataclass
class PPOConfig(AlgorithmConfig):
    """PPO hyperparameters; defaults are the Procgen paper's. Frequencies count iterations."""

    name: str = "ppo"
    total_timesteps: int = checked(25_000_000, ge=1)
    num_steps: int = checked(256, ge=1)
    num_minibatches: int = checked(8, ge=1)
    update_epochs: int = checked(3, ge=1)
    learning_rate: float = checked(5e-4, gt=0)
    adam_eps: float = checked(1e-5, gt=0)
    anneal_lr: bool = False
    gamma: float = checked(0.999, ge=0, le=1)
    gae_lambda: float = checked(0.95, ge=0, le=1)
    clip_coef: float = checked(0.2, gt=0)
    clip_vloss: bool = True
    ent_coef: float = checked(0.01, ge=0)
    vf_coef: float = checked(0.5, ge=0)
    max_grad_norm: float = checked(0.5, gt=0)
    norm_adv: bool = True
    normalize_reward: bool = True


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    next_value: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over a [T, N] rollout.

    `dones[t]` is 1 where the action at step t ended the episode (so step t+1 starts a new one);
    `next_value` [N] is V of the observation after the last step. Returns (advantages, returns).
    """
    num_steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(next_value)
    for t in reversed(range(num_steps)):
        following = next_value if t == num_steps - 1 else values[t + 1]
        alive = 1.0 - dones[t]
        delta = rewards[t] + gamma * following * alive - values[t]
        last = delta + gamma * gae_lambda * alive * last
        advantages[t] = last
    return advantages, advantages + values


@dataclass
class RolloutBatch:
    """A flattened rollout on the training device (B rows), or a minibatch of it."""

    obs: Any
    actions: torch.Tensor
    logprobs: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    values: torch.Tensor

    def __getitem__(self, idx: torch.Tensor) -> RolloutBatch:
        return RolloutBatch(
            index_obs(self.obs, idx),
            self.actions[idx],
            self.logprobs[idx],
            self.advantages[idx],
            self.returns[idx],
            self.values[idx],
        )


class EpisodeTracker:
    """Returns and lengths (and any other per-episode stats) of the last `window` finished episodes."""

    def __init__(self, window: int = 100) -> None:
        self.recent: deque[dict[str, float]] = deque(maxlen=window)

    def add(self, info: dict) -> None:
        mask = info.get("_episode")
        if mask is None or not mask.any():
            return
        stats = info["episode"]
        for i in np.flatnonzero(mask):
            self.recent.append({k: float(np.asarray(v)[i]) for k, v in stats.items() if not k.startswith("_")})

    def mean(self, key: str = "r") -> float | None:
        values = [e[key] for e in self.recent if key in e]
        return float(np.mean(values)) if values else None


@ALGORITHMS.register("ppo")
class PPO(Algorithm):
    """Trains a `PPOPolicy` on a vector env, one rollout-and-update iteration at a time."""

    config_cls = PPOConfig

    def __init__(
        self,
        config: PPOConfig,
        policy: PPOPolicy,
        env: gym.vector.VectorEnv,
        seed: int = 0,
        make_env: EnvFactory | None = None,
    ) -> None:
        if not isinstance(policy, PPOPolicy):
            raise ConfigError(f"algorithm ppo trains a ppo policy, not {type(policy).__name__}")
        super().__init__(config, policy, env, seed, make_env)
        self.compute = policy.compute
        self.num_envs = env.num_envs
        self.batch_size = config.num_steps * self.num_envs
        if self.batch_size % config.num_minibatches:
            raise ConfigError(
                f"num_steps x num_envs = {self.batch_size} is not divisible by "
                f"algorithm.num_minibatches={config.num_minibatches}"
            )
        self.minibatch_size = self.batch_size // config.num_minibatches
        # Enough iterations to take at least total_timesteps steps.
        self.num_iterations = max(1, math.ceil(config.total_timesteps / self.batch_size))
        self.optimizer = torch.optim.Adam(policy.model.parameters(), lr=config.learning_rate, eps=config.adam_eps)

        # Rollout buffers, [T, N] (obs: [T, N, *obs_shape], uint8 frames stay uint8).
        device, T, N = self.compute.device, config.num_steps, self.num_envs
        self.obs = ObsBuffer(policy.observation_space, T, N, device, self.compute.channels_last)
        self.actions = torch.zeros((T, N), dtype=torch.long, device=device)
        self.logprobs = torch.zeros((T, N), device=device)
        self.rewards = torch.zeros((T, N), device=device)
        self.dones = torch.zeros((T, N), device=device)
        self.values = torch.zeros((T, N), device=device)

        self.normalizer = ReturnNormalizer(N, config.gamma) if config.normalize_reward else None
        self.episodes = EpisodeTracker()
        self.next_obs, _ = env.reset(seed=seed)

    # -- one iteration ---------------------------------------------------------------------------
    def train_iteration(self) -> dict[str, float]:
        """Collect a rollout, compute advantages, update on minibatches. Returns the stats to log."""
        lr = self.anneal_learning_rate()
        start = time.perf_counter()
        self.collect_rollout()
        rollout_seconds = time.perf_counter() - start
        advantages, returns = self.compute_advantages()
        stats = self.update(self.flatten_rollout(advantages, returns))
        elapsed = time.perf_counter() - start
        self.iteration += 1
        stats.update(
            {
                "charts/learning_rate": lr,
                "charts/sps": self.batch_size / elapsed,
                "charts/rollout_seconds": rollout_seconds,
                "charts/update_seconds": elapsed - rollout_seconds,
            }
        )
        recent = self.episodes.mean("r")
        if recent is not None:
            stats["charts/episode_return"] = recent
            stats["charts/episode_length"] = self.episodes.mean("l")
        return stats

    def anneal_learning_rate(self) -> float:
        """Linear decay to 0 over the run when `anneal_lr`; returns this iteration's learning rate."""
        lr = self.config.learning_rate
        if self.config.anneal_lr:
            lr *= 1.0 - self.iteration / self.num_iterations
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        return lr

    def collect_rollout(self) -> None:
        """Fill the [T, N] buffers by stepping the env with the current policy."""
        self.policy.eval()
        for step in range(self.config.num_steps):
            obs = self.obs.write(step, self.next_obs)
            action, out = self.policy.act(obs, temperature=1.0, return_model_output=True)
            self.actions[step] = action
            self.logprobs[step] = log_prob_and_entropy(out.logits, action)[0]
            self.values[step] = out.value

            self.next_obs, reward, terminated, truncated, info = self.env.step(action.cpu().numpy())
            done = terminated | truncated
            self.policy.reset(done)
            self.episodes.add(info)
            if self.normalizer is not None:
                reward = self.normalizer(reward, done)
            reward = torch.from_numpy(np.asarray(reward, dtype=np.float32))
            cut = truncated & ~terminated
            if cut.any():
                reward = reward.to(self.compute.device) + self.bootstrap(info, cut)
            self.rewards[step].copy_(reward, non_blocking=True)
            self.dones[step].copy_(torch.from_numpy(done.astype(np.float32)), non_blocking=True)
            self.global_step += self.num_envs

    def bootstrap(self, info: dict, cut: np.ndarray) -> torch.Tensor:
        """[N] `gamma * V(final observation)` where a time limit cut the episode (`cut`), else 0."""
        idx = np.flatnonzero(cut)
        values = self.policy.value(stack_obs([info["final_obs"][i] for i in idx]))
        extra = torch.zeros(self.num_envs, device=self.compute.device)
        extra[torch.from_numpy(idx).to(self.compute.device)] = self.config.gamma * values.float()
        return extra

    def compute_advantages(self) -> tuple[torch.Tensor, torch.Tensor]:
        """GAE advantages and returns [T, N] of the collected rollout."""
        next_value = self.policy.value(self.next_obs)
        cfg = self.config
        return compute_gae(self.rewards, self.values, self.dones, next_value, cfg.gamma, cfg.gae_lambda)

    def flatten_rollout(self, advantages: torch.Tensor, returns: torch.Tensor) -> RolloutBatch:
        """The [T, N] rollout as B = T x N rows (views, no copies of the frames)."""
        return RolloutBatch(
            self.obs.flat(),  # [B, *obs_shape]
            self.actions.flatten(),  # [B]
            self.logprobs.flatten(),  # [B]
            advantages.flatten(),  # [B]
            returns.flatten(),  # [B]
            self.values.flatten(),  # [B]
        )

    def update(self, batch: RolloutBatch) -> dict[str, float]:
        """`update_epochs` passes of clipped PPO over shuffled minibatches of `batch`; mean stats."""
        cfg = self.config
        self.policy.train()
        totals = torch.zeros(5, device=self.compute.device)
        for _ in range(cfg.update_epochs):
            order = torch.randperm(self.batch_size, device=self.compute.device)
            for start in range(0, self.batch_size, self.minibatch_size):
                totals += self.update_minibatch(batch[order[start : start + self.minibatch_size]])

        num_updates = cfg.update_epochs * cfg.num_minibatches
        var_returns = batch.returns.var()
        explained = torch.where(var_returns > 0, 1 - (batch.returns - batch.values).var() / var_returns, torch.nan)
        # The one host sync of the update.
        pg, v, ent, kl, clipfrac, explained = torch.cat([totals / num_updates, explained[None]]).tolist()
        return {
            "loss/policy": pg,
            "loss/value": v,
            "loss/entropy": ent,
            "loss/approx_kl": kl,
            "loss/clip_fraction": clipfrac,
            "loss/explained_variance": explained,
        }

    def update_minibatch(self, mb: RolloutBatch) -> torch.Tensor:
        """One gradient step on a minibatch; returns its stats as a device tensor (no host sync)."""
        loss, stats = self.minibatch_loss(mb)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.policy.model.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        return stats

    def minibatch_loss(self, mb: RolloutBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Clipped PPO loss of one minibatch, and its stats [policy, value, entropy, approx_kl, clipfrac].

        The forward runs in the configured precision; everything from the logits on is fp32.
        """
        cfg = self.config
        new_logprob, entropy, new_value = self.policy.evaluate_actions(mb.obs, mb.actions)
        log_ratio = new_logprob - mb.logprobs
        ratio = log_ratio.exp()

        adv = mb.advantages
        if cfg.norm_adv:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        pg_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - cfg.clip_coef, 1 + cfg.clip_coef)).mean()

        v_unclipped = (new_value - mb.returns) ** 2
        if cfg.clip_vloss:
            v_clipped = mb.values + (new_value - mb.values).clamp(-cfg.clip_coef, cfg.clip_coef)
            v_loss = 0.5 * torch.max(v_unclipped, (v_clipped - mb.returns) ** 2).mean()
        else:
            v_loss = 0.5 * v_unclipped.mean()
        entropy_mean = entropy.mean()
        loss = pg_loss - cfg.ent_coef * entropy_mean + cfg.vf_coef * v_loss

        with torch.no_grad():
            approx_kl = ((ratio - 1) - log_ratio).mean()
            clipfrac = ((ratio - 1).abs() > cfg.clip_coef).float().mean()
            stats = torch.stack([pg_loss, v_loss, entropy_mean, approx_kl, clipfrac])
        return loss, stats

    # -- checkpointing ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything besides the weights that continuing exactly needs, taken between iterations:
        optimizer, counters, reward normaliser, the episodes in flight (the env's game states where
        the env can save them) and the recent episode statistics."""
        can_save = hasattr(self.env, "get_state")
        return {
            "optim_state_dict": copy.deepcopy(self.optimizer.state_dict()),
            "global_step": self.global_step,
            "iteration": self.iteration,
            "reward_normalizer": self.normalizer.state_dict() if self.normalizer else None,
            "env_state": self.env.get_state() if can_save else None,
            "recent_episodes": list(self.episodes.recent),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optim_state_dict"])
        self.global_step = int(state["global_step"])
        self.iteration = int(state["iteration"])
        if self.normalizer is not None and state.get("reward_normalizer"):
            self.normalizer.load_state_dict(state["reward_normalizer"])
        self.episodes.recent.extend(state.get("recent_episodes", []))
        # Without a saved env state (a gymnasium env) the run goes on from fresh episodes.
        if state.get("env_state") is not None and hasattr(self.env, "set_state"):
            self.next_obs = self.env.set_state(state["env_state"])
