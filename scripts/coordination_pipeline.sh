#!/usr/bin/env bash
# The whole coordination workflow on one Procgen game, then one comparison table of all methods:
#   1. a novice and a stronger expert (all levels, 5x the steps) with configs/procgen_agent.yaml;
#   2. the PPO coordinator (configs/procgen_ppo.yaml);
#   3. the baselines, calibrated on validation: always-novice, always-expert, random, logit-threshold;
#   4. `duo-ai eval --cost-sweep` of every method on the test levels.
#
#   scripts/coordination_pipeline.sh            # full scale: the GPU recipe (25M-step expert)
#   scripts/coordination_pipeline.sh --small    # a 2-core CPU, about 20 minutes (sizes below)
# Options: --game <procgen game> (default coinrun), --out <folder> (default experiments/coordination),
#          --threads N (torch CPU threads; default 1 with --small, else 0 = all cores).
# Runs that already finished (summary.json present) are reused, so a rerun only redoes what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

small=0
game=coinrun
out=experiments/coordination
threads=""
while [ $# -gt 0 ]; do
  case "$1" in
    --small) small=1 ;;
    --game) game=$2; shift ;;
    --out) out=$2; shift ;;
    --threads) threads=$2; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "coordination_pipeline: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ -x .venv/bin/duo-ai ]; then DUO=.venv/bin/duo-ai; PY=.venv/bin/python; else DUO=duo-ai; PY=python3; fi

if [ "$small" = 1 ]; then
  # CPU sizes. Two torch threads on two shared cores stall each other, so one thread by default.
  threads=${threads:-1}
  ppo=(env.num_envs=32 algorithm.num_steps=128 algorithm.num_minibatches=4 algorithm.log_freq=4
       algorithm.save_freq=8 evaluation.num_episodes=0)
  novice=("${ppo[@]}" algorithm.total_timesteps=40960)                   # 200 easy levels
  expert=("${ppo[@]}" algorithm.total_timesteps=204800 env.num_levels=0)  # all levels, 5x the steps
  # hidden_dist: the coordinator reads the novice's features and has no CNN of its own (about 2,000 SPS here).
  coordinator=("${ppo[@]}" algorithm.total_timesteps=294912 policy.model.feature_type=hidden_dist)
  coordination=(coordination.base_penalty_episodes=64 evaluation.num_envs=16)
  calibration=(algorithm.num_episodes=64 algorithm.num_envs=16 algorithm.rollout_episodes=64)
  scores=(max_prob)
  eval_args=(-n 200 evaluation.num_envs=20)
else
  threads=${threads:-0}
  novice=(algorithm.total_timesteps=5000000)
  expert=(env.num_levels=0)
  coordinator=()
  coordination=()
  calibration=()
  scores=(max_logit max_prob margin neg_entropy energy)
  eval_args=(-n 1000)
fi
common=("env.task=$game" "experiments_dir=$out" "num_threads=$threads")

start=$SECONDS
stage() { echo; echo "== [$(date +%H:%M:%S), +$((SECONDS - start))s] $*"; }

# train <run name> <config> <overrides...>: skipped when the run already finished.
train() {
  local name=$1 config=$2
  shift 2
  if [ -f "$out/$name/summary.json" ]; then
    echo "reusing $out/$name"
    return
  fi
  "$DUO" train -c "$config" "name=$name" overwrite=true "${common[@]}" "$@" --no-progress
}

stage "novice: $game, 200 levels"
train novice configs/procgen_agent.yaml "${novice[@]}"
stage "expert: $game, all levels, longer"
train expert configs/procgen_agent.yaml "${expert[@]}"

agents=("train_novice=$out/novice/last.ckpt" "train_expert=$out/expert/last.ckpt" "${coordination[@]}")
baseline=("${agents[@]}" evaluation.num_episodes=0)  # evaluated below, with everything else
stage "PPO coordinator"
train ppo configs/procgen_ppo.yaml "${agents[@]}" "${coordinator[@]}"
stage "baselines: always-novice, always-expert, random, logit"
methods=(always_novice always_expert random)
train always_novice configs/procgen_always.yaml "${baseline[@]}" policy.agent=novice
train always_expert configs/procgen_always.yaml "${baseline[@]}" policy.agent=expert
train random configs/procgen_random.yaml "${baseline[@]}" "${calibration[@]}"
for score in "${scores[@]}"; do
  train "logit_$score" configs/procgen_logit.yaml "${baseline[@]}" "${calibration[@]}" "policy.score=$score"
  methods+=("logit_$score")
done
methods+=(ppo)

stage "evaluation on the test levels, with the cost sweep"
mkdir -p "$out/eval"
for m in "${methods[@]}"; do
  ckpt=$out/$m/last.ckpt
  [ -f "$out/$m/best_val_true.ckpt" ] && ckpt=$out/$m/best_val_true.ckpt  # the PPO run's model selection
  "$DUO" eval --checkpoint "$ckpt" --split test --cost-sweep --json "$out/eval/$m.json" "${eval_args[@]}" \
    "num_threads=$threads" >/dev/null
  echo "evaluated $m"
done

stage "comparison ($game, test levels)"
"$PY" - "$out/eval" "${methods[@]}" <<'EOF'
import json
import sys
from pathlib import Path

folder, methods = Path(sys.argv[1]), sys.argv[2:]
header = ("method", "reward", "base reward", "expert fraction", "episode length", "AUC")
rows = []
for m in methods:
    r = json.loads((folder / f"{m}.json").read_text())
    rows.append((
        m,
        f"{r['reward_mean']:.2f} ± {r['reward_ci95']:.2f}",
        f"{r['base_reward_mean']:.2f}",
        f"{r['expert_fraction']:.3f}",
        f"{r['episode_length_mean']:.0f}",
        f"{r['auc']:.3f}",
    ))
widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
line = lambda row: "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) + " |"
print(line(header))
print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
for row in rows:
    print(line(row))
first = json.loads((folder / f"{methods[0]}.json").read_text())
print(f"\nreward: mean ± 95% CI over {first['num_episodes']} episodes at expert_query_cost_weight 0.4; "
      "AUC: area under reward vs cost weight 0, 0.2, ..., 1 (same episodes).")
EOF
echo "wall-clock: $((SECONDS - start))s"
