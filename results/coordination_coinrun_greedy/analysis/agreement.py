"""How often the greedy novice and the greedy expert choose the same action on test levels, along
the expert's own trajectories (always-expert play). Procgen's actions 9-14 are extra keys that
coinrun ignores, so they count as 4 (no move) for the "same move" figure."""

import dataclasses
import sys

import numpy as np

from duo_ai.config import load_config
from duo_ai.coordination.agents import build_agent, read_agent_checkpoint
from duo_ai.core.compute import Compute
from duo_ai.envs import make_env

study = sys.argv[1]
env_cfg = load_config(overrides=["env.task=coinrun"]).env
test = dataclasses.replace(env_cfg, distribution_mode="hard", start_level=100000, num_levels=0, splits={})
env = make_env(test, "train", num_envs=50, seed=7)
compute = Compute.from_settings(device="cpu", num_threads=1)
novice = build_agent(read_agent_checkpoint("novice", f"{study}/novice/last.ckpt"), env, compute)
expert = build_agent(read_agent_checkpoint("expert", f"{study}/expert/last.ckpt"), env, compute)
obs, _ = env.reset(seed=7)
same = moves = total = 0
for _ in range(400):
    a_e = expert.act(obs, temperature=0).cpu().numpy()
    a_n = novice.act(obs, temperature=0).cpu().numpy()
    same += int((a_e == a_n).sum())
    moves += int((np.where(a_e < 9, a_e, 4) == np.where(a_n < 9, a_n, 4)).sum())
    total += len(a_e)
    obs, *_ = env.step(a_e)
print(f"{total} expert steps on test levels: same action {same / total:.1%}, same move {moves / total:.1%}")
