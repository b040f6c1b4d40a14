"""The speed options leave the maths unchanged: bf16, channels-last, compile, uint8 storage, malloc.

All comparisons run one real minibatch (real coinrun frames from a real rollout, the real IMPALA
model at its initial weights) through two settings with identical weights.
"""

from __future__ import annotations

import dataclasses
import resource

import gymnasium as gym
import numpy as np
import pytest
import torch

from duo_ai.algorithms.ppo import PPO, RolloutBatch
from duo_ai.algorithms.storage import ObsBuffer
from duo_ai.bench import build_ppo
from duo_ai.config import load_config
from duo_ai.core.compute import Compute, keep_freed_host_memory
from duo_ai.models.impala import ImpalaPPOModel, ImpalaPPOModelConfig

SMALL = ["env.num_envs=8", "algorithm.num_steps=16", "algorithm.num_minibatches=2", "num_threads=1"]
FP32 = Compute(torch.device("cpu"))
BF16 = Compute(torch.device("cpu"), dtype=torch.bfloat16)


@pytest.fixture(scope="module")
def rollout() -> tuple[PPO, RolloutBatch]:
    """A fp32 PPO after one real rollout, and a minibatch of 64 of its frames."""
    algo = build_ppo(load_config(overrides=[*SMALL, "precision=fp32"]))
    algo.collect_rollout()
    batch = algo.flatten_rollout(*algo.compute_advantages())
    yield algo, batch[torch.arange(64)]
    algo.env.close()


def run_minibatch(algo: PPO, mb: RolloutBatch, compute: Compute):
    """Forward outputs, loss, stats and flat gradient of `mb` under `compute`'s precision."""
    algo.policy.compute = compute
    try:
        algo.policy.train()
        out = algo.policy.forward(mb.obs)
        loss, stats = algo.minibatch_loss(mb)
        algo.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad = torch.cat([p.grad.flatten() for p in algo.policy.model.parameters()])
        algo.optimizer.zero_grad(set_to_none=True)
    finally:
        algo.policy.compute = FP32
    return out, loss.detach(), stats, grad


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference relative to the largest magnitude of the reference `b`."""
    return ((a.float() - b).abs().max() / b.abs().max()).item()


def test_bf16_matches_fp32_on_the_same_minibatch(rollout):
    algo, mb = rollout
    out32, loss32, stats32, grad32 = run_minibatch(algo, mb, FP32)
    out16, loss16, stats16, grad16 = run_minibatch(algo, mb, BF16)
    # Logits and values are handed to the loss in fp32 whatever the autocast dtype.
    assert out16.logits.dtype == torch.float32 and out16.value.dtype == torch.float32
    # bf16 keeps 8 significant bits (unit roundoff 2^-8 = 0.4%); the convs accumulate in fp32, so
    # after 15 convs the outputs stay within a few roundoffs (0.7% measured). 3% is a loose bound
    # that a real bug (wrong layout, wrong scaling, a dropped layer) would exceed by far.
    assert rel_err(out16.logits, out32.logits) < 0.03
    assert rel_err(out16.value, out32.value) < 0.03
    assert rel_err(out16.hidden, out32.hidden) < 0.03
    # The loss is computed in fp32 from those outputs: same value to 1e-3 absolute (it is O(0.01-1)).
    assert abs(loss16.item() - loss32.item()) < 1e-3
    assert torch.allclose(stats16, stats32, rtol=0.02, atol=1e-3)
    # The update goes the same way: gradients point the same direction with the same length.
    assert torch.nn.functional.cosine_similarity(grad16, grad32, dim=0).item() > 0.999
    assert abs(grad16.norm().item() / grad32.norm().item() - 1) < 0.02


def test_channels_last_matches_contiguous_layout(rollout):
    algo, mb = rollout
    out_cl, loss_cl, _, grad_cl = run_minibatch(algo, mb, FP32)
    algo.policy.model.to(memory_format=torch.contiguous_format)
    try:
        frames = mb.obs.contiguous()
        assert not frames.is_contiguous(memory_format=torch.channels_last)
        out_nchw, loss_nchw, _, grad_nchw = run_minibatch(algo, dataclasses.replace(mb, obs=frames), FP32)
    finally:
        algo.policy.model.to(memory_format=torch.channels_last)
    # Same fp32 arithmetic in another summation order: agreement to float32 rounding.
    assert rel_err(out_nchw.logits, out_cl.logits) < 1e-4
    assert rel_err(out_nchw.value, out_cl.value) < 1e-4
    assert abs(loss_nchw.item() - loss_cl.item()) < 1e-5
    assert rel_err(grad_nchw, grad_cl) < 1e-3


@pytest.mark.slow
def test_setup_applies_the_compute_settings():
    algo = build_ppo(load_config(overrides=[*SMALL, "precision=bf16", "compile=false"]))
    try:
        conv = algo.policy.model.encoder.stacks[0].conv
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
        # fp32 master weights: autocast casts copies, the optimizer updates fp32 parameters.
        assert all(p.dtype == torch.float32 for p in algo.policy.model.parameters())
        assert algo.compute.precision == "bf16"
        stats = algo.update(algo.flatten_rollout(*algo.compute_advantages()))
        assert all(np.isfinite(v) for v in stats.values())
    finally:
        algo.env.close()


def test_rollout_frames_are_stored_as_uint8():
    space = gym.spaces.Box(0, 255, (3, 64, 64), dtype=np.uint8)
    buffer = ObsBuffer(space, num_steps=256, num_envs=64, device=torch.device("cpu"), channels_last=True)
    assert buffer.data.dtype == torch.uint8
    # The standard recipe's rollout: 256 x 64 frames of 3x64x64 bytes = 201 MB (805 MB as float32).
    assert buffer.nbytes() == 256 * 64 * 3 * 64 * 64
    assert buffer.flat().is_contiguous(memory_format=torch.channels_last)


@pytest.mark.slow
def test_cached_host_memory_is_reused_without_page_faults():
    if not keep_freed_host_memory():
        pytest.skip("no glibc mallopt here")
    torch.manual_seed(0)
    space = gym.spaces.Box(0, 255, (3, 64, 64), dtype=np.uint8)
    model = ImpalaPPOModel(ImpalaPPOModelConfig(), space, gym.spaces.Discrete(15))
    frames = torch.randint(0, 256, (256, 3, 64, 64), dtype=torch.uint8)

    def faults_of_one_step() -> int:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        out = model(frames)  # fp32 activations of 67 MB per conv output: served by mmap by default
        (out.logits.sum() + out.value.sum()).backward()
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    cold = faults_of_one_step()
    faults_of_one_step()  # the heap grows to fit
    # Without the cache every step faults in most of its activations again (~70% of the cold
    # step, measured); with it the heap's freed blocks are reused (0-5% measured). The median
    # ignores a single step where the heap still grew (seen once: [16384, 0, 0] of 45195).
    warm = sorted(faults_of_one_step() for _ in range(5))
    assert warm[2] < 0.25 * cold, (cold, warm)
