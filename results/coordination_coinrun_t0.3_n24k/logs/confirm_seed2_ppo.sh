#!/bin/bash
# 2026-12-02: the lambda-1 PPO pick at 0.56 on the 2026-11-27 4,000 confirmatory test
# episodes (--seed 2), for a paired comparison with the lambda-0.95 PPO and the other methods there.
cd /work/main
O=experiments/coordination_n24k
.venv/bin/duo-ai eval --checkpoint $O/ppo_w0.56/best_val_true.ckpt --split test -n 4000 --seed 2 --cost-weight 0.56 \
  --json $O/evals_confirm/ppo/w0.56.json num_threads=1 precision=fp32 evaluation.num_envs=50 > $O/logs/confirm_ppo.log 2>&1
echo "done rc=$? $(date)"
