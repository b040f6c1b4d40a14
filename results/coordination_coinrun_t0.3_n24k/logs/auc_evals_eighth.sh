#!/usr/bin/env bash
# The pipeline's own AUC evaluation command (evaluate() in coordination_pipeline.sh), run for the
# rerun PPO weights while ppo_w2 trains; the pipeline then reuses these files.
set -euo pipefail
cd /work/main
E=experiments/coordination_n24k
for w in "$@"; do
  best=$E/ppo_w$w/best_val_true.ckpt; [ -f "$best" ] || best=$E/ppo_w$w/last.ckpt
  f=$E/evals_auc/ppo/w$w.json
  [ -f "$f" ] && continue
  .venv/bin/duo-ai eval --checkpoint "$best" --split test -n 100 --seed 1 --cost-weight "$w" --json "$f" \
    num_threads=1 precision=fp32 evaluation.num_envs=50 >/dev/null
  echo "evaluated ppo at weight $w"
done
