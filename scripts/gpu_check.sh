#!/usr/bin/env bash
# Prove the GPU path on a machine with NVIDIA GPUs, from a fresh clone, in a few minutes.
#
#   scripts/gpu_check.sh --out results/bench_gpu [--work DIR]
#
# Steps, each timed and logged to OUT/logs/<step>.log (docs/gpu.md has the time budget):
#   setup        bash scripts/setup.sh --dev (keeps a CUDA torch that is already installed)
#   machine      torch sees CUDA: versions, GPUs, CPU (OUT/machine.json)
#   cuda_tests   the tests that need CUDA (tests/test_cuda.py; NCCL with 2+ GPUs)
#   bench_bf16   duo-ai bench at the Procgen recipe shape (64 envs x 256 steps, 8 minibatches,
#   bench_fp32   3 epochs) in bf16 and in fp32: SPS, env-only ceiling, compute bound, GPU memory
#   train, eval  the quickstart for 4 iterations on CUDA, then duo-ai eval of its last.ckpt on CUDA
#   ddp_*        with 2+ GPUs: torchrun over 2 GPUs (NCCL), 2 iterations then --resume to 3,
#                against an uninterrupted 3-iteration run: weights must be bit-identical
#   study_gpus*  with 2+ GPUs: a 2-job study (minigrid_smoke --gate-only --jobs 2): the two agents,
#                trained at once, must each get their own GPU (their run_info.json, study_gpus.json)
# then writes OUT/summary.json and OUT/summary.md (python scripts/gpu_check.py) and prints the table.
# Runs, checkpoints and other bulk go to --work DIR (default: a new temporary folder).
#
# Exit codes: 0 every step passed; 1 a step failed (the summary says which); 2 bad arguments;
# 3 no NVIDIA GPU here (one line on stderr, nothing run or written).
set -uo pipefail
usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; }
out="" work=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=${2:-}; shift 2 || shift ;;
    --work) work=${2:-}; shift 2 || shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "error: unknown argument '$1'; usage: scripts/gpu_check.sh --out DIR [--work DIR]" >&2; exit 2 ;;
  esac
done
if [ -z "$out" ]; then
  echo "error: --out DIR is required (the folder for the summary, e.g. --out results/bench_gpu)" >&2
  exit 2
fi
gpus=0
command -v nvidia-smi >/dev/null 2>&1 && gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
if [ "$gpus" -lt 1 ]; then
  echo "gpu_check: no NVIDIA GPU on this machine (nvidia-smi lists none); nothing to check" >&2
  exit 3
fi

mkdir -p "$out/logs" && out=$(cd "$out" && pwd) || { echo "error: cannot create --out folder $out" >&2; exit 2; }
work=${work:-$(mktemp -d -t duo_ai_gpu_check.XXXXXX)}
mkdir -p "$work" && work=$(cd "$work" && pwd) || { echo "error: cannot create --work folder $work" >&2; exit 2; }
cd "$(dirname "$0")/.."
rm -f "$out/steps.jsonl"
echo "gpu_check: $gpus GPU(s); summary to $out, runs to $work"

# step NAME TIMEOUT_S COMMAND...: run it with its output in OUT/logs/NAME.log, record status and wall time.
step() {
  local name=$1 limit=$2 status=ok start seconds
  shift 2
  start=$(date +%s.%N)
  timeout --kill-after 10 "$limit" "$@" >"$out/logs/$name.log" 2>&1
  case $? in
    0) ;;
    124|137) status=timeout ;;
    *) status=failed ;;
  esac
  seconds=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  printf '{"step": "%s", "status": "%s", "seconds": %s, "log": "logs/%s.log"}\n' \
    "$name" "$status" "$seconds" "$name" >>"$out/steps.jsonl"
  printf '  %-12s %-8s %6s s\n' "$name" "$status" "$seconds"
  [ "$status" = ok ]
}
skip() { printf '{"step": "%s", "status": "skipped", "seconds": 0, "note": "%s"}\n' "$1" "$2" >>"$out/steps.jsonl"; }

py=.venv/bin/python duo=.venv/bin/duo-ai
step setup 300 bash scripts/setup.sh --dev
step machine 60 "$py" scripts/gpu_check.py machine --json "$out/machine.json"

# Every test file that skips without CUDA (today tests/test_cuda.py).
cuda_tests=$(grep -l 'skipif(not torch\.cuda\.is_available()' tests/test_*.py || echo tests/test_cuda.py)
step cuda_tests 240 "$py" -m pytest -q -p no:cacheprovider -rs --junitxml "$out/cuda_tests.xml" $cuda_tests

bench=(--iterations 2 --warmup 1 --no-baseline device=cuda)
step bench_bf16 240 "$duo" bench "${bench[@]}" precision=bf16 --json "$out/bench_bf16.json"
step bench_fp32 240 "$duo" bench "${bench[@]}" precision=fp32 --json "$out/bench_fp32.json"

# The quickstart (32 envs x 128 steps) for 4 iterations: 2 checkpoints, the end-of-run evaluation.
quick=(device=cuda algorithm.total_timesteps=16384 algorithm.save_freq=2 algorithm.log_freq=1
       evaluation.num_episodes=32 "experiments_dir=$work" --no-progress)
rm -rf "$work/quickstart"
if step train 180 "$duo" train "${quick[@]}" name=quickstart; then
  mkdir -p "$out/train"
  cp "$work/quickstart/summary.json" "$work/quickstart/run_info.json" "$work/quickstart/train.log" "$out/train/"
fi
step eval 120 "$duo" eval --checkpoint "$work/quickstart/last.ckpt" --episodes 64 device=cuda --json "$out/eval.json"

if [ "$gpus" -ge 2 ]; then
  # 32 envs (16 per GPU) x 128 steps = 4,096 steps an iteration: 2 iterations, resumed to 3, against 3.
  ddp=(algorithm.log_freq=1 algorithm.save_freq=1 evaluation.num_episodes=0 distributed_timeout_s=120
       "experiments_dir=$work" --no-progress)
  rm -rf "$work/ddp_resumed" "$work/ddp_reference"
  export NPROC=2
  step ddp_train 180 scripts/train_multi_gpu.sh "${ddp[@]}" algorithm.total_timesteps=8192 name=ddp_resumed
  step ddp_resume 180 scripts/train_multi_gpu.sh --resume "$work/ddp_resumed" algorithm.total_timesteps=12288 \
    --no-progress
  step ddp_reference 180 scripts/train_multi_gpu.sh "${ddp[@]}" algorithm.total_timesteps=12288 name=ddp_reference
  step ddp_compare 60 "$py" scripts/gpu_check.py compare "$work/ddp_resumed/last.ckpt" \
    "$work/ddp_reference/last.ckpt" --json "$out/ddp_resume.json"
  # A study's 2 jobs at once, one GPU each: the agents train side by side on CUDA.
  rm -rf "$work/study_gpus"
  step study_gpus 300 "$duo" study minigrid_smoke --gate-only --jobs 2 --out "$work/study_gpus" compute.num_threads=0
  step study_gpus_ids 30 "$py" - "$work/study_gpus" "$out/study_gpus.json" <<'CHECK'
import json, sys
from pathlib import Path
study, out = Path(sys.argv[1]), Path(sys.argv[2])
info = {run: json.loads((study / run / "run_info.json").read_text()) for run in ("novice", "expert")}
jobs = {run: {k: i.get(k) for k in ("cuda_visible_devices", "device", "gpu", "num_threads")} for run, i in info.items()}
out.write_text(json.dumps(jobs, indent=2) + "\n")
print(json.dumps(jobs))
ids = [job["cuda_visible_devices"] for job in jobs.values()]
assert None not in ids and ids[0] != ids[1], f"the two jobs did not get a GPU each: {ids}"
assert all(job["device"].startswith("cuda") for job in jobs.values()), "a job did not train on CUDA"
CHECK
else
  skip ddp "torchrun over 2 GPUs needs 2 GPUs; this machine has $gpus"
  skip study_gpus "a GPU per job needs 2 GPUs; this machine has $gpus"
fi

summariser=$py
[ -x "$summariser" ] || summariser=python3  # the summary needs only the standard library
echo
"$summariser" scripts/gpu_check.py summary --out "$out"
