"""PPO itself learns: CartPole-v1 with mlp_ppo reaches a greedy mean return >= 195."""

import pytest

from duo_ai.config import load_config
from duo_ai.envs import make_env
from duo_ai.evaluation import evaluate
from duo_ai.training import Trainer

STEPS = 50_000


@pytest.mark.slow
def test_ppo_learns_cartpole(tmp_path):
    config = load_config(
        "configs/cartpole.yaml",
        [f"experiments_dir={tmp_path}", f"algorithm.total_timesteps={STEPS}", "evaluation.num_episodes=0"],
    )
    trainer = Trainer(config, show_progress=False)
    try:
        trainer.run()
        env = make_env(config.env, "test", num_envs=10)
        result = evaluate(trainer.parts.policy, env, num_episodes=20, temperature=0.0, seed=123)
    finally:
        trainer.close()
    assert trainer.parts.algorithm.global_step <= STEPS + config.env.num_envs * config.algorithm.num_steps
    assert result.num_episodes == 20
    assert sum(result.returns) / 20 >= 195, result.returns
