#!/usr/bin/env bash
# The coordination benchmark's protocol on one game, end to end: `duo-ai study` on the study file
# configs/studies/<suite>_<mode>.yaml (which says what runs and why), with these flags mapped onto
# its keys. `duo-ai study --help` and configs/studies/procgen_base.yaml describe the protocol.
#
#   scripts/coordination_pipeline.sh            # the GPU recipe (procgen_gpu: novice 15M steps on easy, expert 25M on hard)
#   scripts/coordination_pipeline.sh --small    # a 2-core CPU (procgen_small): reproduces results/coordination_coinrun_t0.3_n24k
#   scripts/coordination_pipeline.sh --smoke    # everything, tiny, in a few minutes (procgen_smoke)
# Options: --suite procgen|minigrid (the study file's prefix; default procgen), --game G (game),
#          --out DIR (out; default experiments/coordination), --threads N (compute.num_threads),
#          --weight W (weight: the study's cost weight, reported in table.json; with --auc-episodes
#          it may lie off the grid), --weights W1,W2,... (weights: the cost weights that get a PPO
#          coordinator and evaluations; a single one is also the study's weight unless --weight
#          says otherwise), --novice CKPT / --expert CKPT (agents.<role>.checkpoint: use these
#          agents instead of training them), --episodes N (evaluation.episodes),
#          --auc-episodes N (evaluation.auc_episodes), --confirm-episodes N / --confirm-seed S
#          (evaluation.confirm_episodes / confirm_seed; 0 = no confirmation), --jobs N (run up to N
#          trainings/evaluations at once, each logging to DIR/logs/), --agent-temperature T
#          (coordination.agent_temperature: 1 samples, 0 = greedy), --gate-only (stop after the gate,
#          which prints the weight where always-novice and always-expert break even),
#          --ppo-start random|uniform (ppo.start).
# Runs that already finished (summary.json present) are reused and runs that were stopped part-way
# (a last.ckpt, no summary.json) resume, so a rerun only redoes what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=gpu
suite=procgen
args=()
weight_given=""
single_weight=""
while [ $# -gt 0 ]; do
  case "$1" in  # an option that takes a value and has none is refused in one line
    --suite|--game|--out|--threads|--weight|--weights|--novice|--expert|--episodes|--auc-episodes|\
    --confirm-episodes|--confirm-seed|--jobs|--agent-temperature|--ppo-start)
      [ $# -ge 2 ] || { echo "coordination_pipeline: $1 needs a value (see --help)" >&2; exit 2; } ;;
  esac
  case "$1" in
    --small) mode=small ;;
    --smoke) mode=smoke ;;
    --suite) suite=$2; shift ;;
    --game) args+=("game=$2"); shift ;;
    --out) args+=(--out "$2"); shift ;;
    --threads) args+=("compute.num_threads=$2"); shift ;;
    --weight) args+=("weight=$2"); weight_given=1; shift ;;
    --weights)
      args+=("weights=[$2]")
      case $2 in *,*) ;; *) single_weight=$2 ;; esac
      shift ;;
    --novice) args+=("agents.novice.checkpoint=$2"); shift ;;
    --expert) args+=("agents.expert.checkpoint=$2"); shift ;;
    --episodes) args+=("evaluation.episodes=$2"); shift ;;
    --auc-episodes) args+=("evaluation.auc_episodes=$2"); shift ;;
    --confirm-episodes) args+=("evaluation.confirm_episodes=$2"); shift ;;
    --confirm-seed) args+=("evaluation.confirm_seed=$2"); shift ;;
    --jobs) args+=(--jobs "$2"); shift ;;
    --agent-temperature) args+=("coordination.agent_temperature=$2"); shift ;;
    --gate-only) args+=(--gate-only) ;;
    --ppo-start) args+=("ppo.start=$2"); shift ;;
    -h|--help) awk 'NR == 1 { next } /^#/ { print; next } { exit }' "$0"; exit 0 ;;  # the header above
    *) echo "coordination_pipeline: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
# A one-weight study's weight is that weight, unless --weight says otherwise.
[ -n "$single_weight" ] && [ -z "$weight_given" ] && args+=("weight=$single_weight")
study=configs/studies/${suite}_$mode.yaml
[ -f "$study" ] || { echo "coordination_pipeline: no study file $study for --suite $suite; pass --suite procgen or minigrid" >&2; exit 2; }
if [ -x .venv/bin/duo-ai ]; then DUO=.venv/bin/duo-ai; else DUO=duo-ai; fi
exec "$DUO" study "$study" "${args[@]}"
