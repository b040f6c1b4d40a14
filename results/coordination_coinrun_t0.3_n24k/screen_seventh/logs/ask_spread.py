"""How much a PPO coordinator's probability of asking changes from state to state (val_true only).

A coordinator that has learned only a rate asks with nearly the same probability everywhere
(spread ~0); one that has learned where to ask does not. Plays the coordinator (sampling, as in
evaluation) on 32 val_true envs for 400 steps and reports the mean, the std across steps and the
5/50/95th percentiles of P(ask).
    python ask_spread.py CKPT [train_novice=... train_expert=...]
"""

import sys

import numpy as np
import torch

from duo_ai.build import compute_from, config_from_checkpoint, env_maker
from duo_ai.core.checkpoint import load_checkpoint
from duo_ai.eval_job import load_policy

path, overrides = sys.argv[1], sys.argv[2:]
payload = load_checkpoint(path)
config = config_from_checkpoint(payload, None, ["num_threads=1", *overrides])
compute = compute_from(config)
env = env_maker(config, compute, lambda m: None, split="val_true", agents=payload.get("agents"))("val_true", 32)
policy, _ = load_policy(config, payload, env, compute, lambda m: None)
obs, _ = env.reset(seed=12345)
probs = []
for _ in range(400):
    action, out = policy.act(obs, temperature=1.0, return_model_output=True)
    probs.append(torch.softmax(out.logits.float(), -1)[:, 1].numpy())
    obs, *_ = env.step(action.numpy())
p = np.concatenate(probs)
q = np.percentile(p, [5, 50, 95])
print(
    f"{path}: P(ask) mean {p.mean():.3f}, std across states {p.std():.3f}, "
    f"5/50/95th percentiles {q[0]:.3f} / {q[1]:.3f} / {q[2]:.3f}"
)
