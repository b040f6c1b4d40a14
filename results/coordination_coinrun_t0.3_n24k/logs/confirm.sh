#!/bin/bash
# A confirmatory evaluation on fresh test episodes (--seed 2, 4,000 per method at 0.56), decided in
# 2026-11-27, before any seed-2 episode was played: the 1,000-episode study (seed 1) had random
# above both always-agents, significantly only against always-expert. Nothing is selected on these.
# Usage: confirm.sh METHOD CHECKPOINT WEIGHT
cd /work/main
O=experiments/coordination_n24k
mkdir -p $O/evals_confirm/$1
echo "$1 start $(date)"
.venv/bin/duo-ai eval --checkpoint $2 --split test -n 4000 --seed 2 --cost-weight $3 \
  --json $O/evals_confirm/$1/w$3.json num_threads=1 evaluation.num_envs=50 > $O/logs/confirm_$1.log 2>&1
echo "$1 done rc=$? $(date)"
