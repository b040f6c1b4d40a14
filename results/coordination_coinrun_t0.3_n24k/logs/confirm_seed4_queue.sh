#!/bin/bash
# The baselines first (they do not depend on PPO), on one core beside the pipeline; PPO once the
# pipeline has picked it; then the report.
cd /work/main
O=experiments/coordination_n24k
$O/logs/confirm_seed4.sh always_novice $O/always_novice/last.ckpt 0
$O/logs/confirm_seed4.sh always_expert $O/always_expert/last.ckpt 0
$O/logs/confirm_seed4.sh random $O/random/last.ckpt 0.56
$O/logs/confirm_seed4.sh logit $O/logit/last.ckpt 0.56
while pgrep -f coordination_pipeline.sh >/dev/null; do sleep 10; done
$O/logs/confirm_seed4.sh ppo $O/ppo_w0.56/best_val_true.ckpt 0.56
.venv/bin/duo-ai study-report $O/evals_confirm_seed4 --weight 0.56 --weights 0.56 -o $O/report_confirm_seed4 --root $O
