"""Rollout storage for observations, on the training device, in the env's own dtype.

Frames stay uint8 (the model scales them), so the standard recipe's 256 x 64 rollout of
3x64x64 frames takes 201 MB rather than 805 MB of float32. Image buffers are laid out
channels-last in memory, matching what Procgen delivers and what channels-last convs want.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch


def _alloc(space: gym.spaces.Box, num_steps: int, num_envs: int, device: torch.device, channels_last: bool):
    dtype = torch.from_numpy(np.zeros((), dtype=space.dtype)).dtype
    shape = tuple(space.shape)
    if channels_last and len(shape) == 3:
        c, h, w = shape
        return torch.empty((num_steps, num_envs, h, w, c), dtype=dtype, device=device).permute(0, 1, 4, 2, 3)
    return torch.empty((num_steps, num_envs, *shape), dtype=dtype, device=device)


class ObsBuffer:
    """[num_steps, num_envs, ...] tensors for an array space, or a dict of them for a Dict space."""

    def __init__(
        self, space: gym.Space, num_steps: int, num_envs: int, device: torch.device, channels_last: bool
    ) -> None:
        if isinstance(space, gym.spaces.Dict):
            self.data: Any = {k: _alloc(s, num_steps, num_envs, device, channels_last) for k, s in space.spaces.items()}
        else:
            self.data = _alloc(space, num_steps, num_envs, device, channels_last)

    def write(self, step: int, obs: Any) -> Any:
        """Copy a batch of observations into slot `step` and return that slot (a device tensor view)."""
        if isinstance(self.data, dict):
            return {k: self._copy(self.data[k][step], obs[k]) for k in self.data}
        return self._copy(self.data[step], obs)

    @staticmethod
    def _copy(dst: torch.Tensor, src: Any) -> torch.Tensor:
        src = src if isinstance(src, torch.Tensor) else torch.from_numpy(np.asarray(src))
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


def index_obs(obs: Any, idx: torch.Tensor) -> Any:
    return {k: v[idx] for k, v in obs.items()} if isinstance(obs, dict) else obs[idx]


def stack_obs(observations: list[Any]) -> Any:
    """A batch from a list of single observations (arrays, or dicts of arrays)."""
    if isinstance(observations[0], dict):
        return {k: np.stack([o[k] for o in observations]) for k in observations[0]}
    return np.stack(observations)
