#!/usr/bin/env bash
# Train one PPO on all the GPUs of this machine: one process per GPU (torchrun), data-parallel.
#
#   scripts/train_multi_gpu.sh [duo-ai train arguments ...]
#
#   scripts/train_multi_gpu.sh -c procgen_standard env.task=starpilot name=sp_8gpu
#   scripts/train_multi_gpu.sh --resume experiments/sp_8gpu            # same number of GPUs
#   NPROC=2 scripts/train_multi_gpu.sh -c procgen_standard   # only 2 processes
#
# env.num_envs is the total over all processes (64 on 8 GPUs = 8 envs each) and must divide by the
# number of processes; the update is the one of a single process with all the envs (docs/scaling.md).
# NPROC defaults to the GPUs `nvidia-smi -L` lists. Set DUO_AI_TORCHRUN to the torchrun to use
# (default: .venv/bin/torchrun if present, else torchrun). Only rank 0 prints and writes the run.
set -euo pipefail
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi
here=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${NPROC:-}" ]; then
  if ! command -v nvidia-smi >/dev/null 2>&1 || ! NPROC=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU'); then
    echo "error: nvidia-smi lists no GPU; set NPROC to the number of processes to run" >&2
    exit 2
  fi
fi
if [ "$NPROC" -lt 1 ]; then
  echo "error: no GPU found (nvidia-smi -L); set NPROC to the number of processes to run" >&2
  exit 2
fi
torchrun=${DUO_AI_TORCHRUN:-$([ -x "$here/.venv/bin/torchrun" ] && echo "$here/.venv/bin/torchrun" || echo torchrun)}
duo=$(dirname "$(command -v "$torchrun")")/duo-ai
if [ ! -x "$duo" ]; then
  duo=$(command -v duo-ai) || { echo "error: no duo-ai beside $torchrun nor on PATH; run scripts/setup.sh" >&2; exit 2; }
fi
# One CPU thread per process for torch's host-side work unless said otherwise: N processes share the cores.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec "$torchrun" --standalone --nproc-per-node "$NPROC" "$duo" train "$@"
