#!/usr/bin/env bash
# Train a PPO agent on one Procgen game, then evaluate its last checkpoint on unseen levels.
#
#   scripts/train_eval.sh GAME [CONFIG] [key=value ...]
#
#   scripts/train_eval.sh starpilot                                   # standard recipe, 25M steps (GPU box)
#   scripts/train_eval.sh coinrun configs/quickstart.yaml             # CPU quickstart
#   scripts/train_eval.sh bigfish configs/procgen_standard.yaml seed=2 algorithm.total_timesteps=5000000
#
# The run goes to experiments/<GAME>_<config name>_s<seed>/; evaluation results to eval_test.json
# (sampled, temperature 1) and eval_test_greedy.json (temperature 0) inside it.
# Set DUO_AI to the command to use (default: .venv/bin/duo-ai if present, else duo-ai).
set -euo pipefail
if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi
game=$1; shift
config=configs/procgen_standard.yaml
if [ $# -gt 0 ] && [[ "$1" == *.yaml || "$1" == *.yml ]]; then config=$1; shift; fi
here=$(cd "$(dirname "$0")/.." && pwd)
duo=${DUO_AI:-$([ -x "$here/.venv/bin/duo-ai" ] && echo "$here/.venv/bin/duo-ai" || echo duo-ai)}

seed=1
for arg in "$@"; do [[ "$arg" == seed=* ]] && seed=${arg#seed=}; done
name="${game}_$(basename "${config%.*}")_s${seed}"
run="experiments/$name"

if [ -f "$run/last.ckpt" ]; then
  echo "resuming $run"
  "$duo" train --resume "$run" "$@"
else
  "$duo" train --config "$config" "env.task=$game" "name=$name" "$@"
fi
"$duo" eval --checkpoint "$run/last.ckpt" --split test --temperature 1 --json "$run/eval_test.json"
"$duo" eval --checkpoint "$run/last.ckpt" --split test --temperature 0 --json "$run/eval_test_greedy.json"
