"""Proximal Policy Optimisation (Schulman et al. 2017) with the Procgen recipe.

One iteration, in the order `PPO.train_iteration` runs it:

1. `collect_rollout`: step the N envs for T steps with the current policy (act, step, store),
   filling the [T, N] `RolloutBuffer` (`obs`, `actions`, `logprobs`, `rewards`, `dones`,
   `values`; how they reach the device is the buffer's business, `duo_ai.algorithms.storage`);
2. `compute_advantages`: GAE over the rollout, bootstrapped with V of the next observation;
3. `update`: `update_epochs` passes over B = T x N rows in shuffled minibatches of the clipped
   surrogate loss, one optimizer step each (fewer when `target_kl` stops it early).

Names follow CleanRL's `ppo.py`. The rewards learned from are scaled by the running std of the
discounted returns (`normalize_reward`), then clipped when `reward_clip` is set. A time-limit
truncation is not a termination: its last reward gets `gamma * V(final observation)` added, so
the cut-off future is bootstrapped, not zeroed.

Data-parallel (one of `ctx.world_size` processes under torchrun, as CleanRL's multi-GPU PPO): the
env holds this process's share of the envs, every process starts from rank 0's weights, and the
update is the one a single process would make over all envs' rollouts: gradients averaged every
minibatch, advantages normalised by the minibatch's global mean and std, the reward normaliser
running over all envs (`SharedReturnNormalizer`); `global_step` and the logged statistics count
every process (`duo_ai.algorithms.parallel`). One process takes none of these paths.

Longer than ~400 lines for one reason: the whole iteration (config, rollout, advantages, loss,
update, the state an exact resume needs) reads top to bottom in one file, as CleanRL's does.
"""

from __future__ import annotations

import copy
import math
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from duo_ai.algorithms.normalize import ReturnNormalizer, SharedReturnNormalizer
from duo_ai.algorithms.parallel import advantage_moments, episode_stats, global_mean, global_update_stats
from duo_ai.algorithms.storage import RolloutBuffer, index_obs, stack_obs
from duo_ai.core.algorithm import Algorithm, AlgorithmConfig, EnvFactory
from duo_ai.core.checks import checked
from duo_ai.core.distributed import ProcessContext, all_reduce_host, average_gradients, broadcast_from_main_
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
    # Clip each reward the agent learns from to [-reward_clip, reward_clip], after the reward
    # normaliser's scaling (CleanRL's Procgen PPO clips at 10). null = no clip.
    reward_clip: float | None = checked(None, gt=0)
    # Stop an update early at the first minibatch whose approx_kl (measured before its step, over the
    # minibatch of every process) exceeds target_kl: its remaining minibatches and epochs are
    # skipped. CleanRL checks only at the end of each epoch. null = never stop early.
    target_kl: float | None = checked(None, gt=0)

    def check_run(self, config: Any) -> None:
        """`algorithm.num_minibatches` divides the rollout, `algorithm.num_steps` x `env.num_envs`."""
        rollout = self.num_steps * config.env.num_envs
        if rollout % self.num_minibatches:
            raise ConfigError(
                f"algorithm.num_minibatches={self.num_minibatches} does not divide the rollout of "
                f"algorithm.num_steps x env.num_envs = {self.num_steps} x {config.env.num_envs} = "
                f"{rollout} steps; pick a divisor of it"
            )

    def check_world_size(self, config: Any, world_size: int) -> None:
        """`algorithm.num_minibatches` also divides each process's rollout, `num_steps` x `env.num_envs` / processes."""
        local = self.num_steps * config.env.num_envs // world_size
        if local % self.num_minibatches:
            raise ConfigError(
                f"algorithm.num_minibatches={self.num_minibatches} does not divide each process's rollout of "
                f"algorithm.num_steps x env.num_envs / {world_size} processes = {local} steps; pick a divisor of it"
            )


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


@ALGORITHMS.register("ppo")
class PPO(Algorithm):
    """Trains a `PPOPolicy` on a vector env, one rollout-and-update iteration at a time."""

    config_cls = PPOConfig
    data_parallel = True

    def __init__(
        self,
        config: PPOConfig,
        policy: PPOPolicy,
        env: gym.vector.VectorEnv,
        seed: int = 0,
        make_env: EnvFactory | None = None,
        ctx: ProcessContext | None = None,
    ) -> None:
        if not isinstance(policy, PPOPolicy):
            raise ConfigError(f"algorithm ppo trains a ppo policy, not {type(policy).__name__}")
        super().__init__(config, policy, env, seed, make_env, ctx)
        self.compute = policy.compute
        self.distributed = self.ctx.distributed
        self.num_envs = env.num_envs  # this process's envs
        self.total_envs = self.num_envs * self.ctx.world_size
        self.batch_size = config.num_steps * self.num_envs  # this process's rows of each update
        self.global_batch_size = self.batch_size * self.ctx.world_size
        if self.batch_size % config.num_minibatches:
            raise ConfigError(
                f"num_steps x num_envs = {self.batch_size} is not divisible by "
                f"algorithm.num_minibatches={config.num_minibatches}"
            )
        self.minibatch_size = self.batch_size // config.num_minibatches
        # Enough iterations to take at least total_timesteps steps.
        self.num_iterations = max(1, math.ceil(config.total_timesteps / self.global_batch_size))
        cuda = self.compute.device.type == "cuda"
        params = policy.model.parameters()
        # CUDA: the fused Adam kernel, which also takes fp16's loss scale without a host sync.
        self.optimizer = torch.optim.Adam(params, lr=config.learning_rate, eps=config.adam_eps, fused=cuda or None)
        self.scaler = torch.amp.GradScaler("cuda") if self.compute.needs_grad_scaler else None

        self.normalizer = self.make_normalizer()
        # Data-parallel: the rollout's rewards are scaled (and clipped) once it is complete.
        self.scale_at_end = isinstance(self.normalizer, SharedReturnNormalizer)
        self.rollout = RolloutBuffer(
            policy.observation_space,
            config.num_steps,
            self.num_envs,
            self.compute.device,
            self.compute.channels_last,
            defer_bootstraps=self.scale_at_end,
        )
        self.episodes = EpisodeTracker()
        if self.distributed:
            broadcast_from_main_(policy.model.state_dict().values())  # every process starts from rank 0's weights
        self.next_obs, _ = env.reset(seed=seed)

    def make_normalizer(self) -> ReturnNormalizer | None:
        if not self.config.normalize_reward:
            return None
        if self.distributed:
            reduce = lambda sums: all_reduce_host(sums, "the reward normaliser's reduction")  # noqa: E731
            return SharedReturnNormalizer(self.num_envs, self.config.gamma, self.total_envs, reduce)
        return ReturnNormalizer(self.num_envs, self.config.gamma)

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
                "charts/sps": self.global_batch_size / elapsed,
                "charts/rollout_seconds": rollout_seconds,
                "charts/update_seconds": elapsed - rollout_seconds,
            }
        )
        stats.update(self.episode_means())
        return stats

    def episode_means(self) -> dict[str, float]:
        """Means over the recent episodes (every process's when data-parallel): return and length,
        and in a coordination env the base reward (without costs) and the fraction of steps the
        expert acted. Empty before any episode ended."""
        keys = ("r", "l", "base_reward", "expert_steps")
        sums = episode_stats(self.episodes.recent, keys, self.distributed)
        totals, counts = dict(zip(keys, sums[:4], strict=True)), dict(zip(keys, sums[4:], strict=True))
        if counts["r"] == 0:
            return {}
        means = {"charts/episode_return": totals["r"] / counts["r"], "charts/episode_length": totals["l"] / counts["l"]}
        if counts["expert_steps"] > 0:
            means["charts/episode_base_reward"] = totals["base_reward"] / counts["base_reward"]
            means["charts/episode_expert_fraction"] = totals["expert_steps"] / totals["l"]
        return means

    def anneal_learning_rate(self) -> float:
        """Linear decay to 0 over the run when `anneal_lr`; returns this iteration's learning rate."""
        lr = self.config.learning_rate
        if self.config.anneal_lr:
            lr *= 1.0 - self.iteration / self.num_iterations
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        return lr

    def collect_rollout(self) -> None:
        """Fill the rollout by stepping the env with the current policy: act, step, store."""
        self.policy.eval()
        for step in range(self.config.num_steps):
            obs = self.rollout.obs.write(step, self.next_obs)
            action, out = self.policy.act(obs, temperature=1.0, return_model_output=True)
            # The step's one wait for the device: the envs need the actions. Queued after it, the
            # bookkeeping below runs on a GPU while the envs step.
            host_action = action.cpu().numpy()
            self.rollout.add_action(step, action, log_prob_and_entropy(out.logits, action)[0], out.value)

            self.next_obs, reward, terminated, truncated, info = self.env.step(host_action)
            done = terminated | truncated
            self.policy.reset(done)
            self.episodes.add(info)
            reward = self.learning_reward(reward, done)
            cut = truncated & ~terminated  # a time limit, not the game, ended these episodes
            self.rollout.add_outcome(step, reward, done, self.bootstrap(info, cut) if cut.any() else None)
            self.global_step += self.total_envs
        if self.scale_at_end:
            # Scaled by the running return std over every process's envs (one reduction per rollout).
            self.rollout.set_rewards(self.clip_reward(self.normalizer.normalise()))

    def learning_reward(self, reward: np.ndarray, done: np.ndarray) -> np.ndarray:
        """A step's rewards as the agent learns from them: scaled by the reward normaliser, then
        clipped to +-`reward_clip`. Data-parallel normalisation does both at the rollout's end."""
        if self.normalizer is not None:
            reward = self.normalizer(reward, done)
        return reward if self.scale_at_end else self.clip_reward(reward)

    def clip_reward(self, reward: np.ndarray) -> np.ndarray:
        limit = self.config.reward_clip
        return reward if limit is None else np.clip(reward, -limit, limit)

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
        cfg, rollout = self.config, self.rollout
        return compute_gae(rollout.rewards, rollout.values, rollout.dones, next_value, cfg.gamma, cfg.gae_lambda)

    def flatten_rollout(self, advantages: torch.Tensor, returns: torch.Tensor) -> RolloutBatch:
        """The [T, N] rollout as B = T x N rows (views, no copies of the frames)."""
        rollout = self.rollout
        return RolloutBatch(
            rollout.obs.flat(),  # [B, *obs_shape]
            rollout.actions.flatten(),  # [B]
            rollout.logprobs.flatten(),  # [B]
            advantages.flatten(),  # [B]
            returns.flatten(),  # [B]
            rollout.values.flatten(),  # [B]
        )

    def minibatches(self, batch: RolloutBatch) -> Iterator[tuple[RolloutBatch, torch.Tensor | None]]:
        """`update_epochs` passes over `batch` in shuffled minibatches, each with the moments that
        normalise its advantages (over every process when data-parallel, else None: its own)."""
        cfg = self.config
        global_adv = self.distributed and cfg.norm_adv
        for _ in range(cfg.update_epochs):
            order = torch.randperm(self.batch_size, device=self.compute.device)
            moments = advantage_moments(batch.advantages, order, cfg.num_minibatches) if global_adv else None
            for i, start in enumerate(range(0, self.batch_size, self.minibatch_size)):
                yield batch[order[start : start + self.minibatch_size]], None if moments is None else moments[i]

    def update(self, batch: RolloutBatch) -> dict[str, float]:
        """Clipped PPO over the shuffled minibatches of `batch` (until `target_kl`, if set); mean stats."""
        self.policy.train()
        totals = torch.zeros(5, device=self.compute.device)
        num_updates = 0
        for minibatch, moments in self.minibatches(batch):
            stats = self.update_minibatch(minibatch, moments)
            totals += stats
            num_updates += 1
            if self.kl_over_target(stats):
                break

        if self.distributed:
            # Statistics a model keeps in buffers (e.g. fitted feature scales) are rank 0's everywhere.
            broadcast_from_main_(self.policy.model.buffers())
            summary = global_update_stats(totals / num_updates, batch.returns, batch.values, self.ctx.world_size)
        else:
            var_returns = batch.returns.var()
            residual = (batch.returns - batch.values).var()
            explained = torch.where(var_returns > 0, 1 - residual / var_returns, torch.nan)
            summary = torch.cat([totals / num_updates, explained[None]])
        pg, v, ent, kl, clipfrac, explained = summary.tolist()  # the update's one host sync without target_kl
        stats = {
            "loss/policy": pg,
            "loss/value": v,
            "loss/entropy": ent,
            "loss/approx_kl": kl,
            "loss/clip_fraction": clipfrac,
            "loss/explained_variance": explained,
        }
        if self.config.target_kl is not None:
            stats["loss/minibatches"] = float(num_updates)  # of update_epochs x num_minibatches
        return stats

    def kl_over_target(self, stats: torch.Tensor) -> bool:
        """Whether a minibatch's approx_kl (of its `stats`) exceeds `target_kl`, the mean over every
        process when data-parallel, so that all stop at the same minibatch. Never without
        `target_kl`; with it, one host sync per minibatch."""
        target = self.config.target_kl
        if target is None:
            return False
        approx_kl = stats[3]
        if self.distributed:
            approx_kl = global_mean(approx_kl, self.ctx.world_size, "the minibatch's approx_kl")
        return approx_kl.item() > target

    def update_minibatch(self, mb: RolloutBatch, adv_moments: torch.Tensor | None = None) -> torch.Tensor:
        """One gradient step on a minibatch; returns its stats as a device tensor (no host sync).

        Data-parallel, the gradients are averaged over the processes before clipping, so every
        process clips and steps on the same gradient and keeps the same weights.
        """
        loss, stats = self.minibatch_loss(mb, adv_moments)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
        else:
            self.scaler.scale(loss).backward()
        if self.distributed:
            average_gradients(self.policy.model.parameters(), self.ctx.world_size)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.policy.model.parameters(), self.config.max_grad_norm)
        if self.scaler is None:
            self.optimizer.step()
        else:
            self.scaler.step(self.optimizer)  # skipped (the same way in every process) on inf/nan gradients
            self.scaler.update()
        return stats

    def minibatch_loss(
        self, mb: RolloutBatch, adv_moments: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Clipped PPO loss of one minibatch, and its stats [policy, value, entropy, approx_kl, clipfrac].

        The forward runs in the configured precision; everything from the logits on is fp32.
        `adv_moments` (mean, std) normalise the advantages instead of the minibatch's own: those of
        the minibatch over every process, when data-parallel.
        """
        cfg = self.config
        new_logprob, entropy, new_value = self.policy.evaluate_actions(mb.obs, mb.actions)
        log_ratio = new_logprob - mb.logprobs
        ratio = log_ratio.exp()

        adv = self.normalized_advantages(mb, adv_moments)
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

    def normalized_advantages(self, mb: RolloutBatch, adv_moments: torch.Tensor | None = None) -> torch.Tensor:
        """The minibatch's advantages, standardised when `norm_adv` (by `adv_moments` where given)."""
        adv = mb.advantages
        if self.config.norm_adv:
            mean, std = (adv.mean(), adv.std()) if adv_moments is None else adv_moments.unbind()
            adv = (adv - mean) / (std + 1e-8)
        return adv

    # -- checkpointing ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything besides the weights that continuing exactly needs, taken between iterations:
        optimizer, counters, reward normaliser, the episodes in flight (the env's game states where
        the env can save them) and the recent episode statistics."""
        return {**self.shared_state_dict(), **self.process_state_dict()}

    def shared_state_dict(self) -> dict[str, Any]:
        """The part every process holds alike: optimizer (and gradient scaler), counters."""
        state = {
            "optim_state_dict": copy.deepcopy(self.optimizer.state_dict()),
            "global_step": self.global_step,
            "iteration": self.iteration,
        }
        if self.scaler is not None:
            state["grad_scaler"] = self.scaler.state_dict()
        return state

    def process_state_dict(self) -> dict[str, Any]:
        """This process's own part: its envs' games and discounted returns, its recent episodes."""
        can_save = hasattr(self.env, "get_state")
        return {
            "reward_normalizer": self.normalizer.state_dict() if self.normalizer else None,
            "env_state": self.env.get_state() if can_save else None,
            "recent_episodes": list(self.episodes.recent),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optim_state_dict"])
        if self.scaler is not None and state.get("grad_scaler"):
            self.scaler.load_state_dict(state["grad_scaler"])
        self.global_step = int(state["global_step"])
        self.iteration = int(state["iteration"])
        if self.normalizer is not None and state.get("reward_normalizer"):
            self.normalizer.load_state_dict(state["reward_normalizer"])
        self.episodes.recent.extend(state.get("recent_episodes", []))
        # Without a saved env state (a gymnasium env) the run goes on from fresh episodes.
        if state.get("env_state") is not None and hasattr(self.env, "set_state"):
            self.next_obs = self.env.set_state(state["env_state"])
