#!/bin/bash
# 2026-12-02: a confirmatory evaluation on fresh test episodes (--seed 4: no study has played
# them), 4,000 per method at 0.56, fp32, decided before any seed-4 episode was played and before the
# lambda-1 PPO coordinators were evaluated on test. Every method of the study: always-novice,
# always-expert, random, logit, and PPO (the pipeline's val_true pick). Nothing is selected on them.
# Usage: confirm_seed4.sh METHOD CHECKPOINT WEIGHT
cd /work/main
O=experiments/coordination_n24k
mkdir -p $O/evals_confirm_seed4/$1
echo "$1 start $(date)"
.venv/bin/duo-ai eval --checkpoint $2 --split test -n 4000 --seed 4 --cost-weight $3 \
  --json $O/evals_confirm_seed4/$1/w$3.json num_threads=1 precision=fp32 evaluation.num_envs=50 > $O/logs/confirm_seed4_$1.log 2>&1
echo "$1 done rc=$? $(date)"
