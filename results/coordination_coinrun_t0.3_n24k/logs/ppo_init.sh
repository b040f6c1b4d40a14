#!/bin/bash
# PPO started at random's calibrated rate (p = 0.8 at 0.56, chosen on val_true), 2026-11-27.
# Usage: ppo_init.sh NAME EXTRA_OVERRIDES...   (the --small PPO settings, 262,144 steps, 250 val_true
# episodes per checkpoint so that the best-checkpoint pick is less of a coin toss than with 100)
cd /work/main
O=experiments/coordination_n24k
name=$1; shift
echo "$name start $(date)"
.venv/bin/duo-ai train -c configs/procgen_ppo.yaml name=$name overwrite=true env.task=coinrun experiments_dir=$O num_threads=1 \
  train_novice=$O/agents/novice.ckpt train_expert=experiments/coordination_t03/expert/last.ckpt \
  coordination.base_penalty_episodes=1000 evaluation.num_envs=50 coordination.agent_temperature=0.3 \
  env.num_envs=32 algorithm.num_steps=128 algorithm.num_minibatches=4 algorithm.log_freq=4 \
  policy.model.feature_type=hidden_dist algorithm.learning_rate=0.003 algorithm.ent_coef=0.001 \
  algorithm.eval_freq=8 evaluation.num_episodes=250 evaluation.splits=[val_true] \
  coordination.expert_query_cost_weight=0.56 algorithm.total_timesteps=262144 \
  policy.model.expert_prob_init=0.8 "$@" --no-progress > $O/logs/$name.log 2>&1
echo "$name done rc=$? $(date)"
