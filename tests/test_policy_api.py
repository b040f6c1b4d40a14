"""The PPOPolicy / PPOPolicyConfig contract of shared/spec/ppo_policy_api.txt, item by item."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from duo_ai.core.errors import CheckpointError, ConfigError
from duo_ai.core.policy import Policy
from duo_ai.envs import ProcgenVecEnv
from duo_ai.models.base import ModelOutput
from duo_ai.models.impala import ImpalaCoordPPOModelConfig, ImpalaPPOModelConfig
from duo_ai.policies.ppo import PPOPolicy, PPOPolicyConfig, sample_actions


class CoordSpacesEnv(gym.Env):
    """Only the spaces of a coordination env, to build the default (coordinator) model."""

    observation_space = gym.spaces.Dict(
        {
            "base_obs": gym.spaces.Box(0, 255, (3, 64, 64), np.uint8),
            "novice_hidden": gym.spaces.Box(-np.inf, np.inf, (256,), np.float32),
            "novice_logits": gym.spaces.Box(-np.inf, np.inf, (15,), np.float32),
        }
    )
    action_space = gym.spaces.Discrete(2)


@pytest.fixture(scope="module")
def procgen_env():
    env = ProcgenVecEnv("coinrun", num_envs=4, seed=3)
    yield env
    env.close()


@pytest.fixture(scope="module")
def policy(procgen_env):
    torch.manual_seed(0)
    return PPOPolicy(PPOPolicyConfig(model="impala_ppo"), procgen_env)


def test_config_defaults_and_model_conversion():
    config = PPOPolicyConfig()
    assert config.name == "ppo"
    assert config.load_path is None
    assert isinstance(config.model, ImpalaCoordPPOModelConfig)  # default "impala_coord_ppo", converted
    assert PPOPolicyConfig(model="impala_ppo").model == ImpalaPPOModelConfig()
    from_dict = PPOPolicyConfig(model={"name": "impala_ppo", "hidden_size": 128})
    assert from_dict.model.hidden_size == 128 and from_dict.model.name == "impala_ppo"


def test_config_errors():
    with pytest.raises(IndexError):
        PPOPolicyConfig(model={"hidden_size": 128})
    with pytest.raises(ValueError):
        PPOPolicyConfig(model=42)
    with pytest.raises(ConfigError, match="unknown model"):
        PPOPolicyConfig(model="resnet9000")
    with pytest.raises(ConfigError, match="hidden_sise"):
        PPOPolicyConfig(model={"name": "impala_ppo", "hidden_sise": 3})


def test_policy_attributes(policy):
    assert isinstance(policy, Policy)
    assert PPOPolicy.config_cls is PPOPolicyConfig
    assert isinstance(policy.model, torch.nn.Module)
    assert policy.config.model.name == "impala_ppo"


def test_the_policy_base_declares_setup_which_the_builder_calls():
    """build_policy calls `policy.setup(compute)`: a policy without it cannot even be made."""
    others = {name: lambda self, *args, **kwargs: None for name in Policy.__abstractmethods__ - {"setup"}}
    without_setup = type("WithoutSetup", (Policy,), others)
    with pytest.raises(TypeError, match="setup"):
        without_setup()
    assert type("WithSetup", (without_setup,), {"setup": lambda self, compute: self})() is not None


def test_default_policy_is_a_coordinator_over_dict_observations():
    policy = PPOPolicy(PPOPolicyConfig(), CoordSpacesEnv())
    obs = {k: s.sample()[None].repeat(3, 0) for k, s in CoordSpacesEnv.observation_space.spaces.items()}
    action = policy.act(obs)
    assert action.shape == (3,) and set(action.tolist()) <= {0, 1}


def test_act_shapes_and_model_output(policy, procgen_env):
    obs, _ = procgen_env.reset(seed=1)
    action = policy.act(obs)
    assert isinstance(action, torch.Tensor) and action.shape == (4,) and action.dtype == torch.long
    assert ((action >= 0) & (action < 15)).all()
    action, out = policy.act(obs, return_model_output=True)
    assert isinstance(out, ModelOutput)
    assert out.logits.shape == (4, 15) and out.value.shape == (4,) and out.hidden.shape == (4, 256)


def test_temperature_zero_is_argmax(policy, procgen_env):
    obs, _ = procgen_env.reset(seed=2)
    # Make the policy head decisive so argmax differs across observations.
    with torch.no_grad():
        policy.model.heads.policy.weight.normal_(0, 1.0)
    greedy, out = policy.act(obs, temperature=0, return_model_output=True)
    assert torch.equal(greedy, out.logits.argmax(-1))
    assert all(torch.equal(policy.act(obs, temperature=0), greedy) for _ in range(5))


def test_temperature_sampling_follows_softmax():
    torch.manual_seed(0)
    logits = torch.tensor([[2.0, 0.0, -1.0]]).repeat(40_000, 1)
    for temperature in (1.0, 2.0):
        counts = torch.bincount(sample_actions(logits, temperature), minlength=3).float() / len(logits)
        expected = torch.softmax(logits[0] / temperature, -1)
        assert torch.allclose(counts, expected, atol=0.01), (temperature, counts, expected)
    with pytest.raises(ValueError):
        sample_actions(logits, -0.5)


def test_reset_at_episode_ends_changes_nothing_of_a_stateless_policy(policy, procgen_env):
    """The PPO models keep no state between steps: a reset of some envs leaves weights and actions as they were."""
    obs, _ = procgen_env.reset(seed=4)
    params = policy.get_params()
    action, out = policy.act(obs, temperature=0, return_model_output=True)
    assert policy.reset(np.array([True, False, True, False])) is None
    again, out_again = policy.act(obs, temperature=0, return_model_output=True)
    assert torch.equal(action, again) and torch.equal(out.logits, out_again.logits)
    assert torch.equal(out.value, out_again.value)
    assert all(torch.equal(value, policy.get_params()[key]) for key, value in params.items())


def test_params_round_trip_bit_for_bit(policy, procgen_env):
    params = policy.get_params()
    assert all(isinstance(v, torch.Tensor) for v in params.values())
    other = PPOPolicy(PPOPolicyConfig(model="impala_ppo"), procgen_env)
    assert not all(torch.equal(params[k], v) for k, v in other.get_params().items())
    other.set_params(params)
    assert all(torch.equal(params[k], v) for k, v in other.get_params().items())
    obs, _ = procgen_env.reset(seed=5)
    assert torch.equal(policy.act(obs, temperature=0), other.act(obs, temperature=0))
    # get_params is a snapshot: training later must not change what was returned.
    with torch.no_grad():
        next(policy.model.parameters()).add_(1.0)
    assert not torch.equal(next(iter(params.values())), next(policy.model.parameters()))
    policy.set_params(params)


def test_set_params_from_another_model_is_a_clear_error(policy):
    small = PPOPolicy(PPOPolicyConfig(model={"name": "impala_ppo", "hidden_size": 64}), ProcgenVecEnv("coinrun", 1))
    with pytest.raises(CheckpointError, match="different model"):
        policy.set_params(small.get_params())


def test_train_and_eval_switch_modes(policy):
    policy.train()
    assert policy.model.training and all(m.training for m in policy.model.modules())
    policy.eval()
    assert not policy.model.training and not any(m.training for m in policy.model.modules())


def test_accepts_single_env_and_vector_env():
    single = PPOPolicy(PPOPolicyConfig(model="mlp_ppo"), gym.make("CartPole-v1"))
    vector = PPOPolicy(PPOPolicyConfig(model="mlp_ppo"), gym.make_vec("CartPole-v1", num_envs=3))
    assert single.observation_space.shape == vector.observation_space.shape == (4,)
    assert single.action_space == vector.action_space == gym.spaces.Discrete(2)
    obs, _ = gym.make_vec("CartPole-v1", num_envs=3).reset(seed=0)
    assert vector.act(obs).shape == (3,)


def test_wrong_model_for_env_is_a_clear_error(procgen_env):
    with pytest.raises(ConfigError, match="impala_coord_ppo needs a coordination environment"):
        PPOPolicy(PPOPolicyConfig(), procgen_env)
