#!/bin/bash
# The val_true-only screen of 2026-12-02: PPO at 0.56 started at random's rate (0.8), the --small
# settings, 262,144 steps, 250 val_true episodes per checkpoint. Usage: screen.sh NAME OVERRIDES...
cd /work/main
O=experiments/n24k
name=$1; shift
echo "$name start $(date)"
.venv/bin/duo-ai train -c configs/procgen_ppo.yaml name=$name overwrite=true env.task=coinrun experiments_dir=$O num_threads=1 \
  train_novice=$O/agents/novice.ckpt train_expert=$O/agents/expert.ckpt \
  coordination.base_penalty=0.12447125017709325 evaluation.num_envs=50 coordination.agent_temperature=0.3 \
  env.num_envs=32 algorithm.num_steps=128 algorithm.num_minibatches=4 algorithm.log_freq=4 \
  policy.model.feature_type=hidden_dist algorithm.learning_rate=0.003 algorithm.ent_coef=0.001 \
  algorithm.eval_freq=8 evaluation.num_episodes=250 evaluation.splits=[val_true] \
  coordination.expert_query_cost_weight=0.56 algorithm.total_timesteps=262144 \
  policy.model.expert_prob_init=0.8 "$@" --no-progress > $O/logs/$name.log 2>&1
echo "$name done rc=$? $(date)"
