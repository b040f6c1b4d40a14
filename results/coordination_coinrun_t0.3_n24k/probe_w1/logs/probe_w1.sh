#!/bin/bash
# 2026-12-02, after the study: val_true-only probe of two fixes for PPO at weight 1 (where random
# never asks and the --small PPO, started at 5% with lambda 1, kept asking 3-5%). The --small PPO
# settings in fp32, 131,072 steps (half the grid's), 250 val_true episodes per checkpoint.
# Usage: probe_w1.sh NAME OVERRIDES...
cd /work/main
O=experiments/coordination_n24k
name=$1; shift
echo "$name start $(date)"
.venv/bin/duo-ai train -c configs/procgen_ppo.yaml name=$name overwrite=true env.task=coinrun experiments_dir=$O num_threads=1 precision=fp32 \
  train_novice=$O/agents/novice.ckpt train_expert=experiments/coordination_t03/expert/last.ckpt \
  coordination.base_penalty_episodes=1000 evaluation.num_envs=50 coordination.agent_temperature=0.3 \
  env.num_envs=32 algorithm.num_steps=128 algorithm.num_minibatches=4 algorithm.log_freq=4 \
  policy.model.feature_type=hidden_dist policy.model.normalize_features=true algorithm.gae_lambda=1 \
  algorithm.learning_rate=0.003 algorithm.ent_coef=0.001 algorithm.eval_freq=8 \
  evaluation.num_episodes=250 evaluation.splits=[val_true] \
  coordination.expert_query_cost_weight=1 algorithm.total_timesteps=131072 "$@" --no-progress > $O/logs/$name.log 2>&1
echo "$name done rc=$? $(date)"
