"""How much the novice's features (what hidden/dist coordinators see) change from state to state:
16 envs on test levels (hard), 50 steps of the novice at T = 0.3, its hidden features and logits.
    python novice_features.py NOVICE_CKPT"""

import sys

import numpy as np
import torch

from duo_ai.envs import ProcgenVecEnv
from duo_ai.policies.ppo import PPOPolicy, PPOPolicyConfig

torch.manual_seed(0)
env = ProcgenVecEnv("coinrun", num_envs=16, distribution_mode="hard", start_level=100000, num_levels=0)
novice = PPOPolicy(PPOPolicyConfig(model="impala_ppo", load_path=sys.argv[1]), env)
obs, _ = env.reset(seed=0)
hidden, logits = [], []
for _ in range(50):
    action, out = novice.act(obs, temperature=0.3, return_model_output=True)
    hidden.append(out.hidden)
    logits.append(out.logits)
    obs, *_ = env.step(action.numpy())
h, z = torch.cat(hidden).float(), torch.cat(logits).float()
print(
    f"{len(h)} states; hidden features: mean {h.mean():.4f}, per-dimension std across states "
    f"{h.std(0).mean():.4f}, {(h == 0).float().mean():.0%} zeros"
)
p = torch.softmax(z, -1)
print(
    f"softmax of the logits: max probability {p.max(1).values.mean():.3f} (uniform: {1 / z.shape[1]:.3f}), "
    f"at T = 0.3 {torch.softmax(z / 0.3, -1).max(1).values.mean():.3f}; argmax per state: "
    f"{np.bincount(z.argmax(1).numpy(), minlength=z.shape[1]).tolist()}"
)
