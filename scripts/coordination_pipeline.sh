#!/usr/bin/env bash
# The coordination benchmark's protocol on one Procgen game, end to end:
#   1. agents: a novice (easy mode, 200 levels) and an expert (hard mode, all levels), with
#      configs/procgen_agent.yaml; the novice is weak on the test split (hard) by distribution shift;
#   2. coordinators, one per expert-query cost weight (0, 0.2, ..., 1): a PPO coordinator per weight
#      (configs/procgen_ppo.yaml), plus one at weight 2 as a sanity check (at weight 0 a coordinator
#      that learned asks the expert nearly always, at weight 2 nearly never); the calibrated
#      baselines (random, logit) once, re-calibrated for every weight at evaluation from their
#      stored validation episodes (exactly what calibrating at that weight gives); always-novice
#      and always-expert;
#   3. every method evaluated on the same test levels with the same seed (paired), at every weight;
#   4. `duo-ai study-report`: table.json, reward against cost weight (PNG), AUC with bootstrap intervals.
#   With --auc-episodes N (--small: 100), the study's weight is evaluated on --episodes (DIR/evals,
#   DIR/report) and every weight, for the AUC, on N episodes (DIR/evals_auc, DIR/report_auc).
#   With --confirm-episodes N (--small: 4000), every method is evaluated again at the study's weight
#   on N fresh test episodes (--confirm-seed S, default 4; the others use seed 1), nothing selected
#   on them (DIR/evals_confirm_seedS, DIR/report_confirm_seedS).
#   DIR/table.json is the study's table at its weight: the confirmation's where there is one.
#
#   scripts/coordination_pipeline.sh            # the GPU recipe (novice 15M steps on easy, expert 25M on hard)
#   scripts/coordination_pipeline.sh --small    # this 2-core CPU: reproduces results/coordination_coinrun_t0.3_n24k
#   scripts/coordination_pipeline.sh --smoke    # everything, tiny, in a few minutes (the tests run it)
# Options: --game G (default coinrun), --out DIR (default experiments/coordination), --threads N
#          (torch CPU threads; default 1 with --small/--smoke, else 0 = all cores), --weight W (the
#          study's cost weight, reported in table.json; default 0.4; with --auc-episodes it may lie
#          off the grid, e.g. at the gate's break-even weight: it then gets its own PPO coordinator
#          and is left out of the AUC), --novice CKPT / --expert CKPT
#          (use these agents instead of training them), --episodes N (test episodes per evaluation),
#          --auc-episodes N (test episodes per evaluation at the other weights, see 4.),
#          --jobs N (run up to N independent trainings/evaluations at once, each logging to
#          DIR/logs/; default 1; with --threads 1, --jobs 2 uses both cores of a 2-core CPU),
#          --weights W1,W2,... (the cost weights that get a PPO coordinator and evaluations; default
#          0,0.2,0.4,0.6,0.8,1; a single weight is a one-weight study: its table, no AUC; the sanity
#          coordinators at weights 0 and 2 are trained either way),
#          --agent-temperature T (how the novice and expert act: 1 samples, as the benchmark does;
#          0 = greedy; the --small default is 0.3, see there),
#          --gate-only (stop after the gate, which prints the weight where always-novice and
#          always-expert break even: rerun with that --weight; everything done so far is reused),
#          --confirm-episodes N / --confirm-seed S (see above; 0 = no confirmation),
#          --ppo-start random|uniform (how often each PPO coordinator asks before training: random's
#          calibrated rate at its weight, kept within [0.001, 0.999], or 1/2 as the benchmark; default
#          random with --small/--smoke, uniform for the GPU recipe; see --small for why).
# Runs that already finished (summary.json present) are reused and runs that were stopped part-way
# (a last.ckpt, no summary.json) resume, so a rerun only redoes what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=gpu
game=coinrun
out=experiments/coordination
threads=""
weight=""
novice_ckpt=""
expert_ckpt=""
episodes=""
auc_episodes=""
confirm_episodes=""
confirm_seed=4
weights_arg=""
agent_temperature=""
gate_only=""
ppo_start=""
jobs_max=1
precision=""
while [ $# -gt 0 ]; do
  case "$1" in
    --small) mode=small ;;
    --smoke) mode=smoke ;;
    --game) game=$2; shift ;;
    --out) out=$2; shift ;;
    --threads) threads=$2; shift ;;
    --weight) weight=$2; shift ;;
    --novice) novice_ckpt=$2; shift ;;
    --expert) expert_ckpt=$2; shift ;;
    --episodes) episodes=$2; shift ;;
    --jobs) jobs_max=$2; shift ;;
    --auc-episodes) auc_episodes=$2; shift ;;
    --confirm-episodes) confirm_episodes=$2; shift ;;
    --confirm-seed) confirm_seed=$2; shift ;;
    --weights) weights_arg=$2; shift ;;
    --agent-temperature) agent_temperature=$2; shift ;;
    --gate-only) gate_only=1 ;;
    --ppo-start) ppo_start=$2; shift ;;
    -h|--help) awk 'NR == 1 { next } /^#/ { print; next } { exit }' "$0"; exit 0 ;;  # the header above
    *) echo "coordination_pipeline: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case $jobs_max in
  ''|*[!0-9]*|0) echo "coordination_pipeline: --jobs must be a whole number >= 1, got '$jobs_max'" >&2; exit 2 ;;
esac
case ${ppo_start:-random} in
  random|uniform) ;;
  *) echo "coordination_pipeline: --ppo-start must be random or uniform, got '$ppo_start'" >&2; exit 2 ;;
esac
case ${auc_episodes:-1} in
  *[!0-9]*|0) echo "coordination_pipeline: --auc-episodes must be a whole number >= 1, got '$auc_episodes'" >&2
    exit 2 ;;
esac
case ${confirm_episodes:-0} in
  *[!0-9]*) echo "coordination_pipeline: --confirm-episodes must be a whole number >= 0, got '$confirm_episodes'" >&2
    exit 2 ;;
esac
case $confirm_seed in
  ''|*[!0-9]*|1) echo "coordination_pipeline: --confirm-seed must be a whole number other than 1 (the study's own episodes), got '$confirm_seed'" >&2
    exit 2 ;;
esac
if [ -x .venv/bin/duo-ai ]; then DUO=.venv/bin/duo-ai PY=.venv/bin/python; else DUO=duo-ai PY=python3; fi

weights=(0 0.2 0.4 0.6 0.8 1)
sanity_weight=2  # not in the AUC: only checks that the PPO coordinator responds to the cost
case $mode in
  small)  # a 2-core CPU, the sizes of results/coordination_coinrun_t0.3_n24k. The agents' 385k steps
          # take ~80 min on an AVX2-only CPU (fp32, ~80 SPS per core), the gate ~15 min and the
          # baselines ~35 min there; the PPO grid and its evaluations took 96 min with --jobs 2 on an
          # AMX CPU in fp32 beside another job (30-50 min for each run at weights >= 0.8 on an AVX2
          # CPU with --jobs 2, whose val_true evaluations play the novice's long episodes), and the
          # confirmation (4,000 episodes per method) ~80 min on one core.
    threads=${threads:-1}
    # fp32 everywhere: a CPU with bf16 units (AMX, AVX-512 bf16) would otherwise compute in bf16,
    # its agents would act differently, and it would not reproduce the committed runs and episodes.
    precision=fp32
    shape=(env.num_envs=32 algorithm.num_steps=128 algorithm.num_minibatches=4 algorithm.log_freq=4)
    # Agents this briefly trained have nearly flat logits: sampled (T = 1) they play almost at
    # random (the expert scores 4.6 on val_true sampled, 6.9 greedy), and greedy the novices are all
    # or nothing (0, or ~0.9 of the expert). At T = 0.3 the novice at 24,576 steps (lr 1e-3; greedy,
    # it never leaves the start) plays part of the time: 2.3 on val_true to the expert's 6.25, and
    # 0.45 of the expert on test, within the benchmark's gate of 0.55 (36,864 steps gave 0.74).
    agent_temperature=${agent_temperature:-0.3}
    novice=("${shape[@]}" algorithm.total_timesteps=24576 algorithm.learning_rate=0.001)
    expert=("${shape[@]}" algorithm.total_timesteps=360448)
    # hidden_dist: the coordinator reads the novice's features and has no CNN of its own (fast on
    # a CPU); its two linear heads learn at a higher rate than a CNN, and a smaller entropy bonus
    # lets it settle on one agent where that is best (chosen on val_true at weights 0 and 2).
    # This novice's features barely change from state to state, so they are standardised
    # (normalize_features): on raw features PPO's P(ask) hardly varies between states. GAE lambda 1: with 0.95 the
    # critic cannot credit an ask for a level finished many steps later, and the rate of asking
    # falls through training below what pays (see results/coordination_coinrun_t0.3_n24k).
    # Each PPO coordinator starts at random's calibrated rate (--ppo-start random) and is picked
    # on 250 val_true episodes per checkpoint (100 made the pick mostly noise).
    ppo_start=${ppo_start:-random}
    ppo=("${shape[@]}" algorithm.total_timesteps=262144 policy.model.feature_type=hidden_dist
         policy.model.normalize_features=true algorithm.gae_lambda=1
         algorithm.learning_rate=0.003 algorithm.ent_coef=0.001 algorithm.eval_freq=8
         evaluation.num_episodes=250 evaluation.num_envs=50 evaluation.splits=[val_true])
    calibration=(algorithm.num_episodes=100 algorithm.num_envs=50 algorithm.rollout_episodes=64)
    random_grid=("policy.candidates=[0,0.2,0.4,0.6,0.8,1]")
    logit_grid=("policy.percentiles=[0,20,40,60,80,100]")
    coordination=(coordination.base_penalty_episodes=1000 evaluation.num_envs=50)
    # 1,000 paired episodes at the study's weight; the AUC's six weights on 100 each (a policy that
    # rarely asks plays the novice's ~580-step episodes, a third of them out of time: ~15 min per
    # 1,000 on one AVX2 core).
    test_episodes=1000
    auc_episodes=${auc_episodes:-100}
    # 1,000 episodes leave a gain of ~0.2 against always-novice (whose returns vary most) inside a
    # +-0.27 interval: the claim is checked on 4,000 fresh ones (+-0.13).
    confirm_episodes=${confirm_episodes:-4000} ;;
  smoke)  # minutes: tiny agents that have not learned; checks the plumbing, not the result
    threads=${threads:-1}
    shape=(env.num_envs=4 env.num_threads=1 algorithm.num_steps=32 algorithm.num_minibatches=2
           algorithm.update_epochs=1 algorithm.log_freq=1 "policy.model.channels=[8,16,16]")
    novice=("${shape[@]}" algorithm.total_timesteps=128)
    expert=("${shape[@]}" algorithm.total_timesteps=256)
    ppo=(env.num_envs=4 env.num_threads=1 algorithm.num_steps=32 algorithm.num_minibatches=2 algorithm.update_epochs=1
         algorithm.total_timesteps=128 policy.model.feature_type=hidden_dist policy.model.normalize_features=true
         algorithm.gae_lambda=1 evaluation.num_episodes=2
         evaluation.num_envs=2 evaluation.splits=[val_true])
    calibration=(algorithm.num_episodes=2 algorithm.num_envs=2 algorithm.rollout_episodes=2)
    ppo_start=${ppo_start:-random}
    random_grid=("policy.candidates=[0,1]")
    logit_grid=("policy.percentiles=[0,100]")
    # Agents this small earn nothing, so the cost unit is given rather than measured.
    coordination=(coordination.base_penalty=0.1 evaluation.num_envs=2 env.num_envs=2)
    weights=(0 1)
    weight=${weight:-1}
    test_episodes=4
    confirm_episodes=${confirm_episodes:-2} ;;
  gpu)  # the reference's recipe
    threads=${threads:-0}
    novice=(algorithm.total_timesteps=15000000)
    expert=(algorithm.total_timesteps=25000000)
    ppo=(algorithm.total_timesteps=5000000)
    calibration=()
    random_grid=()
    logit_grid=()
    coordination=()
    ppo_start=${ppo_start:-uniform}
    test_episodes=1000 ;;
esac
# number X: whether X is a plain number >= 0 (digits with at most one point, e.g. 0, 0.4, 2).
number() { case $1 in ''|*[!0-9.]*|*.*.*|.*) return 1 ;; esac; }
if [ -n "$weights_arg" ]; then
  IFS=, read -ra weights <<<"$weights_arg"
  for w in "${weights[@]}"; do
    number "$w" || { echo "coordination_pipeline: --weights takes comma-separated numbers >= 0 (e.g. 0,0.4,1), got '$weights_arg'" >&2
      exit 2; }
  done
  [ "${#weights[@]}" -eq 1 ] && weight=${weight:-${weights[0]}}
fi
weight=${weight:-0.4}
number "$weight" || { echo "coordination_pipeline: --weight takes a number >= 0 (e.g. 0.4), got '$weight'" >&2; exit 2; }
# Weights name runs and files (ppo_w0.1, w0.1.json): written one way, so 0.10 and 0.1 are one weight.
weight=$(LC_ALL=C printf '%g' "$weight")
for i in "${!weights[@]}"; do weights[i]=$(LC_ALL=C printf '%g' "${weights[i]}"); done
number "${agent_temperature:-0}" || {
  echo "coordination_pipeline: --agent-temperature takes a number >= 0 (0 = greedy), got '$agent_temperature'" >&2; exit 2; }
# member X A B ...: whether X is one of A B ... (weights are normalised above).
member() { local x=$1; shift; printf '%s\n' "$@" | grep -qx -- "$x"; }
# One weight has no AUC: its single evaluation is the study's (on --episodes).
[ "${#weights[@]}" -eq 1 ] && auc_episodes=""
test_episodes=${episodes:-$test_episodes}
auc_episodes=${auc_episodes:-$test_episodes}
if [ "$auc_episodes" = "$test_episodes" ] && ! member "$weight" "${weights[@]}"; then
  echo "coordination_pipeline: the study's weight $weight is not among the cost weights (${weights[*]}); pass --weight one of them, add it to --weights, or evaluate the grid apart with --auc-episodes" >&2
  exit 2
fi
# The AUC report's row: the study's weight, or the grid weight nearest to it.
auc_weight=$(printf '%s\n' "${weights[@]}" | awk -v w="$weight" '{d = ($1 > w ? $1 - w : w - $1)} NR == 1 || d <= best + 1e-9 {best = d; pick = $1} END {print pick}')
compute=("num_threads=$threads" ${precision:+"precision=$precision"})
common=("env.task=$game" "experiments_dir=$out" "${compute[@]}")

start=$SECONDS
stage() { echo; echo "== [$(date +%H:%M:%S), +$((SECONDS - start))s] $*"; }

# spawn <name> <command...>: run it now, or with --jobs N > 1 in the background (at most N at once,
# its output appended to $out/logs/<name>.log); join waits for them all, and a failed one ends the pipeline.
pids=()
spawn() {
  local name=$1
  shift
  if [ "$jobs_max" -le 1 ]; then
    "$@"
    return
  fi
  while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do
    wait -n || { echo "coordination_pipeline: a job failed; see $out/logs/" >&2; exit 1; }
  done
  mkdir -p "$out/logs"
  echo "started $name (log: $out/logs/$name.log)"
  # Appended: a rerun that only reuses a finished run keeps the log of the run that did the work.
  echo "== [$(date '+%F %T')] $name" >>"$out/logs/$name.log"
  "$@" >>"$out/logs/$name.log" 2>&1 &
  pids+=("$!")
}
join() {
  local pid
  for pid in "${pids[@]}"; do
    wait "$pid" || { echo "coordination_pipeline: a job failed; see $out/logs/" >&2; exit 1; }
  done
  pids=()
}

# train <run name> <config> <overrides...>: skipped when the run already finished, resumed from its
# last.ckpt (its own saved config) when it was stopped part-way, else started afresh.
train() {
  local name=$1 config=$2
  shift 2
  if [ -f "$out/$name/summary.json" ]; then
    echo "reusing $out/$name"
    return
  fi
  if [ -f "$out/$name/last.ckpt" ]; then
    echo "resuming $out/$name from its last.ckpt"
    "$DUO" train --resume "$out/$name" "${compute[@]}" --no-progress
    return
  fi
  "$DUO" train -c "$config" "name=$name" overwrite=true "${common[@]}" "$@" --no-progress
}

stage "agents: novice ($game easy, 200 levels), expert ($game hard, all levels)"
if [ -z "$novice_ckpt" ]; then
  train novice configs/procgen_agent.yaml "${novice[@]}" evaluation.num_episodes=0
  novice_ckpt=$out/novice/last.ckpt
fi
if [ -z "$expert_ckpt" ]; then
  train expert configs/procgen_agent.yaml "${expert[@]}" env.distribution_mode=hard env.num_levels=0 \
    evaluation.num_episodes=0
  expert_ckpt=$out/expert/last.ckpt
fi
echo "novice: $novice_ckpt; expert: $expert_ckpt"

# The real pair acts everywhere here (test_* default to train_*): every method is selected on
# val_true (held-out hard levels) with it, and the cost unit is the expert's reward per step on test.
pair=("train_novice=$novice_ckpt" "train_expert=$expert_ckpt" "${coordination[@]}")
[ -n "$agent_temperature" ] && pair+=("coordination.agent_temperature=$agent_temperature")

# evaluate <method> <checkpoint> <weight> [<episodes> <folder> <seed>]: test episodes (default $test_episodes,
# into $out/evals, seed 1), paired: the same --seed, number of episodes and envs for every method.
evaluate() {
  local episodes=${4:-$test_episodes} folder=${5:-$out/evals} seed=${6:-1}
  local file=$folder/$1/w$3.json
  mkdir -p "$folder/$1"
  [ -f "$file" ] && { echo "reusing $file"; return; }
  "$DUO" eval --checkpoint "$2" --split test -n "$episodes" --seed "$seed" --cost-weight "$3" --json "$file" \
    "${compute[@]}" evaluation.num_envs=50 >/dev/null
  echo "evaluated $1 at weight $3 on $episodes episodes (seed $seed)"
}

# log_tag [<folder>]: what names the logs of evaluations into <folder> (evals_auc: _auc; evals: nothing).
log_tag() { local tag=${1:+_$(basename "$1")}; echo "${tag/_evals_/_}"; }

# evaluate_always_agents [<episodes> <folder> [<seed>]]: always-novice and always-expert at weight 0
# (their episodes do not depend on the weight: the report re-prices them).
evaluate_always_agents() {
  local tag
  tag=$(log_tag "${2:-}")
  spawn "eval_always_novice$tag" evaluate always_novice "$out/always_novice/last.ckpt" 0 "$@"
  spawn "eval_always_expert$tag" evaluate always_expert "$out/always_expert/last.ckpt" 0 "$@"
}

stage "the gate, before any coordinator: always-novice and always-expert, $test_episodes test episodes each"
# The first run measures base_penalty (cached beside the expert) before the others start.
train always_novice configs/procgen_always.yaml "${pair[@]}" policy.agent=novice evaluation.num_episodes=0
train always_expert configs/procgen_always.yaml "${pair[@]}" policy.agent=expert evaluation.num_episodes=0
# Always-agents do not depend on the weight: one evaluation each, re-priced by the report.
evaluate_always_agents
join
"$PY" -c 'import json, sys
novice, expert = (json.load(open(path)) for path in sys.argv[1:3])
n, e = novice["base_reward_mean"], expert["base_reward_mean"]
even = (e - n) / (expert["base_penalty"] * expert["expert_steps_mean"]) if e > n else 0.0
ratio = f"{n / e:.3f}" if e > 0 else "n/a (the expert scores 0)"
print(f"gate: novice {n:.2f}, expert {e:.2f} on test: the novice gets {ratio} of the expert (the benchmark "
      f"wants at most about 0.55); always-expert and always-novice break even at cost weight {even:.2f}")' \
  "$out/evals/always_novice/w0.json" "$out/evals/always_expert/w0.json"
if [ -n "$gate_only" ]; then
  echo "stopped after the gate (--gate-only); rerun without it to train and evaluate the coordinators"
  echo "wall-clock: $((SECONDS - start))s"
  exit 0
fi

stage "baselines: random and logit (calibrated on val_true)"
spawn random train random configs/procgen_random.yaml "${pair[@]}" "${calibration[@]}" "${random_grid[@]}" \
  evaluation.num_episodes=0
spawn logit train logit configs/procgen_logit.yaml "${pair[@]}" "${calibration[@]}" "${logit_grid[@]}" \
  policy.score=max_prob evaluation.num_episodes=0
[ "$ppo_start" = random ] && join  # PPO starts from random's calibration

# ppo_start_override <weight>: with --ppo-start random, the probability of asking that random's
# calibration chooses at that weight, kept within [0.001, 0.999] so that PPO still tries both agents
# (a few hundred times in --small's 262,144 steps). Wider than the former [0.05, 0.95]: where random
# never asks, a 5% start costs ~29 expert steps in the novice's ~580-step episodes, and PPO with
# lambda 1 keeps its start.
ppo_start_override() {
  [ "$ppo_start" = random ] || return 0
  "$PY" - "$out/random/last.ckpt" "$1" <<'PY'
import sys
from duo_ai.coordination.baselines import reselect
from duo_ai.core.checkpoint import load_checkpoint
payload = load_checkpoint(sys.argv[1])
c = payload["config"]["coordination"]
p = reselect(payload["calibration"], float(sys.argv[2]), c["base_penalty"], c["switch_agent_cost_weight"])
print(f"policy.model.expert_prob_init={min(max(p, 0.001), 0.999):g}")
PY
}

ppo_weights=("$weight")  # the study's first: its result comes first
for w in "${weights[@]}" 0 "$sanity_weight"; do
  member "$w" "${ppo_weights[@]}" || ppo_weights+=("$w")
done
stage "PPO coordinators at cost weights ${ppo_weights[*]} (the study's weight, the grid, the sanity check's 0 and $sanity_weight)"
for w in "${ppo_weights[@]}"; do
  start_override=$(ppo_start_override "$w")
  [ -n "$start_override" ] && echo "PPO at weight $w starts at random's rate: $start_override"
  spawn "ppo_w$w" train "ppo_w$w" configs/procgen_ppo.yaml "${pair[@]}" "${ppo[@]}" \
    "coordination.expert_query_cost_weight=$w" $start_override
done
join
# Sanity: the expert fraction of the PPO coordinators at weight 0 and $sanity_weight on the selection split.
for w in 0 "$sanity_weight"; do
  "$PY" -c 'import json, sys
evals = json.load(open(sys.argv[1]))["eval"]
split = "val_true" if "val_true" in evals else next(iter(evals))
fraction = evals[split]["expert_fraction"]
print(f"sanity: PPO at weight {sys.argv[2]} asks the expert on {fraction:.1%} of {split} steps")' \
    "$out/ppo_w$w/summary.json" "$w"
done

# evaluate_coordinators <weight> [<episodes> <folder> [<seed>]]: random, logit and PPO (its pick on the
# selection split); each job's log is named after the folder (eval_ppo_w1_auc for evals_auc).
evaluate_coordinators() {
  local w=$1 best=$out/ppo_w$1/best_val_true.ckpt tag
  tag=$(log_tag "${3:-}")
  [ -f "$best" ] || best=$out/ppo_w$w/last.ckpt
  spawn "eval_random_w$w$tag" evaluate random "$out/random/last.ckpt" "$w" "${@:2}"
  spawn "eval_logit_w$w$tag" evaluate logit "$out/logit/last.ckpt" "$w" "${@:2}"
  spawn "eval_ppo_w$w$tag" evaluate ppo "$best" "$w" "${@:2}"
}

if [ "$auc_episodes" = "$test_episodes" ]; then
  stage "evaluation: every coordinator at every weight (the study's first), the same $test_episodes test episodes"
  ordered=("$weight")
  for w in "${weights[@]}"; do [ "$w" = "$weight" ] || ordered+=("$w"); done
  for w in "${ordered[@]}"; do evaluate_coordinators "$w"; done
  join
  stage "report"
  "$DUO" study-report "$out/evals" --weight "$weight" -o "$out/report" --root "$out"
else
  stage "evaluation at the study's weight $weight: every coordinator, the same $test_episodes test episodes"
  evaluate_coordinators "$weight"
  join
  "$DUO" study-report "$out/evals" --weight "$weight" --weights "$weight" -o "$out/report" --root "$out"
  stage "evaluation for the AUC: every method at every weight (${weights[*]}), the same $auc_episodes test episodes"
  evaluate_always_agents "$auc_episodes" "$out/evals_auc"
  for w in "${weights[@]}"; do evaluate_coordinators "$w" "$auc_episodes" "$out/evals_auc"; done
  join
  "$DUO" study-report "$out/evals_auc" --weight "$auc_weight" -o "$out/report_auc" --root "$out"
fi
table=$out/report/table.json
if [ "${confirm_episodes:-0}" -gt 0 ]; then
  confirm=evals_confirm_seed$confirm_seed
  stage "confirmation at the study's weight $weight: every method, $confirm_episodes fresh test episodes (seed $confirm_seed)"
  evaluate_always_agents "$confirm_episodes" "$out/$confirm" "$confirm_seed"
  evaluate_coordinators "$weight" "$confirm_episodes" "$out/$confirm" "$confirm_seed"
  join
  "$DUO" study-report "$out/$confirm" --weight "$weight" --weights "$weight" -o "$out/report_confirm_seed$confirm_seed" --root "$out"
  table=$out/report_confirm_seed$confirm_seed/table.json
fi
# The study's table where a script looks for it (its checkpoint paths are relative to $out).
cp "$table" "$out/table.json"
echo "the study's table: $out/table.json (from ${table#"$out"/})"
echo "wall-clock: $((SECONDS - start))s"
