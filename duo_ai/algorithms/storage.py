"""Rollout storage on the training device: how a rollout's data gets there, apart from the RL step.

`RolloutBuffer` holds PPO's [T, N] rollout (observations, actions, log-probabilities, rewards,
dones, values); `ObsBuffer` its observations, in the env's own dtype. Frames stay uint8 (the model
scales them), so the standard recipe's 256 x 64 rollout of 3x64x64 frames takes 201 MB rather than
805 MB of float32. Image buffers are laid out channels-last in memory, matching what Procgen
delivers and what channels-last convs want.

On a CUDA device each step's frames, rewards and dones pass through pinned (page-locked) host
buffers, two used in turn, so the host-to-device copy is a true asynchronous DMA that never waits
on the GPU.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch


def _alloc(
    space: gym.spaces.Box,
    num_steps: int,
    num_envs: int,
    device: torch.device,
    channels_last: bool,
    pin_memory: bool = False,
):
    dtype = torch.from_numpy(np.zeros((), dtype=space.dtype)).dtype
    shape = tuple(space.shape)
    if channels_last and len(shape) == 3:
        c, h, w = shape
        data = torch.empty((num_steps, num_envs, h, w, c), dtype=dtype, device=device, pin_memory=pin_memory)
        return data.permute(0, 1, 4, 2, 3)
    return torch.empty((num_steps, num_envs, *shape), dtype=dtype, device=device, pin_memory=pin_memory)


class ObsBuffer:
    """[num_steps, num_envs, ...] tensors for an array space, or a dict of them for a Dict space."""

    def __init__(
        self, space: gym.Space, num_steps: int, num_envs: int, device: torch.device, channels_last: bool
    ) -> None:
        spaces = space.spaces if isinstance(space, gym.spaces.Dict) else {None: space}
        data = {k: _alloc(s, num_steps, num_envs, device, channels_last) for k, s in spaces.items()}
        self.data: Any = data if isinstance(space, gym.spaces.Dict) else data[None]
        # CUDA: two pinned host slots per observation key, used in turn (cpu: copy straight in).
        cpu, pinned = torch.device("cpu"), device.type == "cuda"
        self.staging = [
            {k: _alloc(s, 1, num_envs, cpu, channels_last, pin_memory=True)[0] for k, s in spaces.items()}
            for _ in range(2 if pinned else 0)
        ]
        # When each slot's last copy is done: a slot is refilled only after it (in a rollout it
        # always is by then, as every step waits for its actions).
        self.copied = [torch.cuda.Event() for _ in self.staging]

    def write(self, step: int, obs: Any) -> Any:
        """Copy a batch of observations into slot `step` and return that slot (a device tensor view)."""
        if not self.staging:
            if isinstance(self.data, dict):
                return {k: self._copy(self.data[k][step], obs[k]) for k in self.data}
            return self._copy(self.data[step], obs)
        stage, copied = self.staging[step % 2], self.copied[step % 2]
        copied.synchronize()
        if isinstance(self.data, dict):
            out = {k: self._copy(self.data[k][step], obs[k], stage[k]) for k in self.data}
        else:
            out = self._copy(self.data[step], obs, stage[None])
        copied.record()
        return out

    @staticmethod
    def _copy(dst: torch.Tensor, src: Any, stage: torch.Tensor | None = None) -> torch.Tensor:
        src = src if isinstance(src, torch.Tensor) else torch.from_numpy(np.asarray(src))
        if stage is not None and src.device.type == "cpu":
            src = stage.copy_(src)  # pageable -> pinned on the host, then an asynchronous DMA
        dst.copy_(src, non_blocking=True)
        return dst

    def flat(self) -> Any:
        """[num_steps * num_envs, ...] views, for minibatch indexing."""
        if isinstance(self.data, dict):
            return {k: v.flatten(0, 1) for k, v in self.data.items()}
        return self.data.flatten(0, 1)

    def nbytes(self) -> int:
        tensors = self.data.values() if isinstance(self.data, dict) else [self.data]
        return sum(t.numel() * t.element_size() for t in tensors)


class RolloutBuffer:
    """PPO's rollout of `num_steps` (T) steps of `num_envs` (N) envs: [T, N] tensors on `device`.

    A step is stored in two calls, `add_action` (what the policy chose, queued on the device) and
    `add_outcome` (what the env gave back, from the host). With `defer_bootstraps` (data-parallel
    reward normalisation, which scales a rollout's rewards only once it is complete) the truncation
    bootstraps are kept aside until `set_rewards` writes the scaled rewards, then added.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        num_steps: int,
        num_envs: int,
        device: torch.device,
        channels_last: bool,
        defer_bootstraps: bool = False,
    ) -> None:
        T, N = num_steps, num_envs
        self.device = device
        self.obs = ObsBuffer(observation_space, T, N, device, channels_last)  # [T, N, *obs_shape]
        self.actions = torch.zeros((T, N), dtype=torch.long, device=device)
        self.logprobs = torch.zeros((T, N), device=device)
        self.rewards = torch.zeros((T, N), device=device)
        self.dones = torch.zeros((T, N), device=device)
        self.values = torch.zeros((T, N), device=device)
        # CUDA: each step's rewards and dones pass through pinned host memory, two slots in turn.
        self.host_step = torch.empty((2, 2, N), pin_memory=True) if device.type == "cuda" else None
        self.bootstraps = torch.zeros((T, N), device=device) if defer_bootstraps else None

    def add_action(self, step: int, action: torch.Tensor, logprob: torch.Tensor, value: torch.Tensor) -> None:
        """The actions taken at `step`, their log-probabilities and the values of the observations."""
        self.actions[step] = action
        self.logprobs[step] = logprob
        self.values[step] = value

    def add_outcome(
        self, step: int, reward: np.ndarray, done: np.ndarray, bootstrap: torch.Tensor | None = None
    ) -> None:
        """The rewards and dones of `step`; `bootstrap` [N] (on the device, if any env's episode was
        cut by a time limit) is added to the rewards, at once or, deferred, by `set_rewards`."""
        reward = torch.from_numpy(np.asarray(reward, dtype=np.float32))
        if bootstrap is not None:
            if self.bootstraps is None:
                reward = reward.to(self.device) + bootstrap
            else:
                self.bootstraps[step] = bootstrap
        if self.host_step is not None and reward.device.type == "cpu":
            self.stage(step, reward, done)
        else:
            self.rewards[step].copy_(reward, non_blocking=True)
            self.dones[step].copy_(torch.from_numpy(done.astype(np.float32)), non_blocking=True)

    def stage(self, step: int, reward: torch.Tensor, done: np.ndarray) -> None:
        """CUDA: rewards and dones to the device through pinned memory, without waiting for it.

        Slot `step % 2` is refilled two steps later, after the next step has waited for its
        actions, so its copy is done by then.
        """
        stage = self.host_step[step % 2]
        stage[0].copy_(reward)
        stage[1].copy_(torch.from_numpy(done))
        self.rewards[step].copy_(stage[0], non_blocking=True)
        self.dones[step].copy_(stage[1], non_blocking=True)

    def set_rewards(self, rewards: np.ndarray) -> None:
        """Deferred bootstraps: the rollout's scaled rewards [T, N], plus the bootstraps kept aside."""
        self.rewards.copy_(torch.from_numpy(rewards))
        self.rewards.add_(self.bootstraps)
        self.bootstraps.zero_()


def index_obs(obs: Any, idx: torch.Tensor) -> Any:
    return {k: v[idx] for k, v in obs.items()} if isinstance(obs, dict) else obs[idx]


def stack_obs(observations: list[Any]) -> Any:
    """A batch from a list of single observations (arrays, or dicts of arrays)."""
    if isinstance(observations[0], dict):
        return {k: np.stack([o[k] for o in observations]) for k in observations[0]}
    return np.stack(observations)
