#!/usr/bin/env bash
# Slurm example: train one PPO on several nodes, one process per GPU, data-parallel (torchrun).
#
#   sbatch --nodes 4 scripts/slurm_train.sh -c procgen_standard env.task=starpilot \
#       env.num_envs=256 name=sp_32gpu
#   sbatch --nodes 4 scripts/slurm_train.sh --resume experiments/sp_32gpu   # same nodes x GPUs
#
# Each node runs one torchrun (srun, one task per node) with --nnodes $SLURM_NNODES and as many
# processes as it has GPUs; they meet at a c10d rendezvous on the first node of the allocation.
# env.num_envs is the total over all processes and must divide by nodes x GPUs per node. The run
# folder (experiments/ by default) must be on a file system every node sees: rank 0 writes it, and
# --resume reads its config.yaml on every node. Adjust the #SBATCH lines to your cluster.
#SBATCH --job-name=duo-ai
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --time=24:00:00
#SBATCH --output=slurm-%j.out
set -euo pipefail
here=${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$here"
torchrun=${DUO_AI_TORCHRUN:-$([ -x "$here/.venv/bin/torchrun" ] && echo "$here/.venv/bin/torchrun" || echo torchrun)}
duo=$(dirname "$(command -v "$torchrun")")/duo-ai
if [ ! -x "$duo" ]; then
  duo=$(command -v duo-ai) || { echo "error: no duo-ai beside $torchrun nor on PATH; run scripts/setup.sh" >&2; exit 2; }
fi
gpus_per_node=${GPUS_PER_NODE:-$(nvidia-smi -L | grep -c '^GPU')}
head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
port=${MASTER_PORT:-29500}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
echo "duo-ai: $SLURM_NNODES nodes x $gpus_per_node GPUs, rendezvous at $head_node:$port"
# Quoted: "$@" reaches every node's duo-ai unchanged.
srun --ntasks-per-node=1 --kill-on-bad-exit=1 \
  "$torchrun" --nnodes "$SLURM_NNODES" --nproc-per-node "$gpus_per_node" \
  --rdzv-id "$SLURM_JOB_ID" --rdzv-backend c10d --rdzv-endpoint "$head_node:$port" \
  "$duo" train "$@"
