#!/bin/bash
# After always-novice's 4,000 confirmatory episodes: the methods the goal is about (the best
# calibrated baseline, random, and PPO) and always-expert, one at a time (one core). Logit and the
# uniform-start PPO are left out for time.
cd /work/main
O=experiments/coordination_n24k
while pgrep -f "evals_confirm/always_novice" >/dev/null; do sleep 10; done
$O/logs/confirm.sh always_expert $O/always_expert/last.ckpt 0
$O/logs/confirm.sh random $O/random/last.ckpt 0.56
while pgrep -f coordination_pipeline.sh >/dev/null; do sleep 10; done
$O/logs/confirm.sh ppo $O/ppo_w0.56/best_val_true.ckpt 0.56
.venv/bin/duo-ai study-report $O/evals_confirm --weight 0.56 --weights 0.56 -o $O/report_confirm --root $O
