#!/bin/bash
# 2026-11-27: which PPO coordinator at 0.56 is "ppo"? Each run's best_val_true.ckpt was picked on
# its own training-time val_true episodes (a winner's curse), so the three picks (and random and
# always-expert for scale) are compared on 500 fresh val_true episodes (--seed 3), paired. No test.
cd /work/main
# (ran as ppo, ppo_init, ppo_init_l1 before the uniform-start runs moved to uniform_start/: renamed since)
O=experiments/coordination_n24k
ev() { mkdir -p $O/evals_select/$1; .venv/bin/duo-ai eval --checkpoint $2 --split val_true -n 500 --seed 3 --cost-weight 0.56 \
  --json $O/evals_select/$1/w0.56.json num_threads=1 evaluation.num_envs=50 > $O/logs/select_$1.log 2>&1; echo "$1 rc=$? $(date)"; }
ev ppo_uniform_start $O/uniform_start/ppo_w0.56/best_val_true.ckpt
ev ppo_start0.8_at32k $O/ppo_init_w0.56/best_val_true.ckpt
ev ppo_start0.8_lambda1 $O/ppo_init_l1_w0.56/best_val_true.ckpt
ev random $O/random/last.ckpt
ev always_expert $O/always_expert/last.ckpt
ev ppo $O/ppo_w0.56/best_val_true.ckpt  # the pipeline's pick (65,536 steps), evaluated after
