#!/bin/bash
# A confirmatory evaluation on fresh test episodes (--seed 2, 4,000 per method), decided after the
# 1,000-episode study (seed 1) showed PPO and logit above both always-agents without significance.
cd /work/main
O=experiments/coordination_t03
while pgrep -f "coordination_pipeline.sh --small --agent-temperature 0.3" >/dev/null; do sleep 10; done
ev() { mkdir -p $O/evals_confirm/$1; .venv/bin/duo-ai eval --checkpoint $2 --split test -n 4000 --seed 2 --cost-weight $3 --json $O/evals_confirm/$1/w$3.json num_threads=1 evaluation.num_envs=50 > $O/logs/confirm_$1.log 2>&1; echo "$1 done $(date)"; }
date
ev always_novice $O/always_novice/last.ckpt 0 &
ev always_expert $O/always_expert/last.ckpt 0 &
wait
ev ppo $O/ppo_w0.26/best_val_true.ckpt 0.26 &
ev logit $O/logit/last.ckpt 0.26 &
wait
ev random $O/random/last.ckpt 0.26
.venv/bin/duo-ai study-report $O/evals_confirm --weight 0.26 --weights 0.26 -o $O/report_confirm --root $O
