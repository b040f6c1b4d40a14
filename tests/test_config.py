"""Config loading: defaults == quickstart, YAML + overrides, and one-line errors for bad input."""

import dataclasses

import pytest

from duo_ai.config import check_world_size, config_to_dict, config_to_yaml, load_config
from duo_ai.core.errors import ConfigError
from tests.conftest import assert_user_error, cli


def test_defaults_are_the_quickstart_file():
    assert config_to_dict(load_config()) == config_to_dict(load_config("configs/quickstart.yaml"))


def test_every_shipped_config_loads():
    from pathlib import Path

    for path in sorted(Path("configs").glob("*.yaml")):
        config = load_config(path)
        assert config.name and config.algorithm.name and config.policy.name, path


def test_standard_recipe_matches_the_reference():
    c = load_config("configs/procgen_standard.yaml")
    a = c.algorithm
    assert (c.env.num_envs, a.num_steps, a.num_minibatches, a.update_epochs) == (64, 256, 8, 3)
    assert (a.learning_rate, a.adam_eps, a.gamma, a.gae_lambda, a.clip_coef) == (5e-4, 1e-5, 0.999, 0.95, 0.2)
    assert (a.vf_coef, a.ent_coef, a.max_grad_norm, a.clip_vloss, a.norm_adv) == (0.5, 0.01, 0.5, True, True)
    assert a.normalize_reward and a.total_timesteps == 25_000_000 and c.env.distribution_mode == "easy"


def test_overrides_apply_on_top_of_yaml_with_types():
    c = load_config(
        "configs/quickstart.yaml",
        ["env.task=starpilot", "algorithm.learning_rate=3e-4", "env.num_levels=0", "policy.model.hidden_size=128"],
    )
    assert c.env.task == "starpilot" and c.env.num_levels == 0
    assert c.algorithm.learning_rate == 3e-4 and isinstance(c.algorithm.learning_rate, float)
    assert c.policy.model.name == "impala_ppo" and c.policy.model.hidden_size == 128


def test_yaml_round_trip(tmp_path):
    c = load_config(
        overrides=["env.task=maze", "policy.model.feature_type=hidden", "policy.model.name=impala_coord_ppo"]
    )
    path = tmp_path / "config.yaml"
    path.write_text(config_to_yaml(c))
    assert dataclasses.asdict(load_config(path)) == dataclasses.asdict(c)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["env.tsk=coinrun"], "unknown config key 'env.tsk'"),
        (["algorithm.learning_rat=1"], "unknown config key 'algorithm.learning_rat'"),
        (["policy.modle=impala_ppo"], "unknown config key 'policy.modle'"),
        (["algorithm.num_steps=many"], "bad value for config key 'algorithm.num_steps'"),
        (["env.num_envs"], "must look like key=value"),
        (["algorithm.name=sac"], "unknown algorithm 'sac'"),
        (["policy.model=resnet"], "unknown model 'resnet'"),
        (["policy.model.feature_type=pixels", "policy.model.name=impala_coord_ppo"], "feature_type='pixels'"),
    ],
)
def test_bad_overrides_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=overrides)


def test_bad_yaml_files(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("env:\n  task: coinrun\n   num_envs: 3\n")
    with pytest.raises(ConfigError, match="not valid YAML at line 3"):
        load_config(broken)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(listy)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_a_file_builds_on_its_defaults_and_wins_over_them(tmp_path):
    (tmp_path / "base.yaml").write_text("seed: 7\nenv: {task: maze, num_envs: 8}\nalgorithm: {name: ppo, gamma: 0.9}\n")
    (tmp_path / "child.yaml").write_text("defaults: [base]\nenv: {num_envs: 16}\nalgorithm: {ent_coef: 0.02}\n")
    c = load_config(tmp_path / "child.yaml")
    assert (c.seed, c.env.task, c.env.num_envs) == (7, "maze", 16)
    assert (c.algorithm.gamma, c.algorithm.ent_coef) == (0.9, 0.02)


def test_coordination_configs_share_one_base():
    """Each coordination config differs from coordination_base only in its name, policy and algorithm."""
    base = config_to_dict(load_config("configs/coordination_base.yaml"))
    for name in ("procgen_ppo", "procgen_always", "procgen_random", "procgen_logit", "procgen_every_k", "procgen_ood"):
        c = config_to_dict(load_config(f"configs/{name}.yaml"))
        differing = {k for k in c if c[k] != base[k]}
        # The PPO coordinator is a skyline: trained on the test distribution with the real pair.
        skyline = {"env", "coordination"} if name == "procgen_ppo" else set()
        assert differing == {"name", "policy", "algorithm", *skyline}, (name, differing)


def test_later_config_files_win(tmp_path):
    (tmp_path / "a.yaml").write_text("env: {task: maze, num_envs: 8}\n")
    (tmp_path / "b.yaml").write_text("env: {num_envs: 16}\n")
    c = load_config([tmp_path / "a.yaml", tmp_path / "b.yaml"], ["env.num_levels=5"])
    assert (c.env.task, c.env.num_envs, c.env.num_levels) == ("maze", 16, 5)


def test_bad_defaults_are_config_errors(tmp_path):
    (tmp_path / "loop_a.yaml").write_text("defaults: [loop_b]\n")
    (tmp_path / "loop_b.yaml").write_text("defaults: [loop_a]\n")
    with pytest.raises(ConfigError, match="in a loop"):
        load_config(tmp_path / "loop_a.yaml")
    (tmp_path / "missing.yaml").write_text("defaults: [nowhere]\n")
    with pytest.raises(ConfigError, match="base config 'nowhere' not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("defaults: 3\n")
    with pytest.raises(ConfigError, match="must be a list of config file names"):
        load_config(tmp_path / "bad.yaml")


# -- checks across sections: each algorithm's, policy's and model's own hooks ------------------------
def test_calibration_takes_the_selection_split_and_refuses_an_undefined_one():
    every_k = "configs/minigrid_every_k.yaml"
    assert load_config(every_k).algorithm.split == "val_true"  # split: null = coordination.selection_split
    assert load_config(every_k, ["coordination.selection_split=test"]).algorithm.split == "test"
    assert load_config(every_k, ["algorithm.split=train"]).algorithm.split == "train"
    with pytest.raises(ConfigError) as error:
        load_config(every_k, ["algorithm.split=val"])
    assert str(error.value) == (
        "algorithm.split names split 'val', which is not defined; algorithm.split must name one of "
        "train, test, val_sim, val_true (or define env.splits.val)"
    )


def test_ppos_minibatches_must_divide_the_whole_and_each_processs_rollout():
    with pytest.raises(ConfigError) as error:
        load_config(overrides=["algorithm.num_minibatches=7"])
    assert str(error.value) == (
        "algorithm.num_minibatches=7 does not divide the rollout of algorithm.num_steps x env.num_envs = "
        "128 x 32 = 4096 steps; pick a divisor of it"
    )
    config = load_config(overrides=["algorithm.num_minibatches=4096"])
    check_world_size(config, 1)
    with pytest.raises(ConfigError) as error:
        check_world_size(config, 2)
    assert str(error.value) == (
        "algorithm.num_minibatches=4096 does not divide each process's rollout of "
        "algorithm.num_steps x env.num_envs / 2 processes = 2048 steps; pick a divisor of it"
    )
    calibrate = load_config("configs/minigrid_every_k.yaml")
    with pytest.raises(ConfigError, match=r"^algorithm calibrate runs in one process; launch it without torchrun"):
        check_world_size(calibrate, 2)


@dataclasses.dataclass
class WideMlpConfig:
    """A model config from outside duo-ai with rules of its own that reach into the env section."""

    name: str = "wide_mlp"
    hidden_sizes: list[int] | None = None

    def resolve(self, config):
        if self.hidden_sizes is None:
            self.hidden_sizes = [8 * config.env.num_envs]

    def check_run(self, config):
        if min(self.hidden_sizes) < config.env.num_envs:
            raise ConfigError(
                f"policy.model.hidden_sizes={self.hidden_sizes} has a layer narrower than env.num_envs="
                f"{config.env.num_envs}; widen it"
            )

    def check_world_size(self, config, world_size):
        raise ConfigError(f"model wide_mlp trains in one process, not {world_size}")


@pytest.fixture
def wide_mlp(monkeypatch):
    """`wide_mlp` registered as a user's module would, for this test only."""
    from duo_ai.core.registry import MODELS
    from duo_ai.models.mlp import MlpPPOModel

    model = type("WideMlp", (MlpPPOModel,), {"config_cls": WideMlpConfig})
    monkeypatch.setitem(MODELS._entries, "wide_mlp", model)
    return ["-c", "configs/cartpole.yaml", "policy.model.name=wide_mlp"]


def test_a_registered_classs_own_checks_across_sections_run_with_the_others(wide_mlp, tmp_path):
    assert load_config(wide_mlp[1], wide_mlp[2:]).policy.model.hidden_sizes == [64]  # 8 x 8 envs
    result = cli("train", *wide_mlp, "policy.model.hidden_sizes=[64,4]", f"experiments_dir={tmp_path}")
    assert_user_error(result, "policy.model.hidden_sizes=[64, 4] has a layer narrower than env.num_envs=8; widen it")
    assert not any(tmp_path.iterdir())
    config = load_config(wide_mlp[1], wide_mlp[2:])
    with pytest.raises(ConfigError, match="^model wide_mlp trains in one process, not 2$"):
        check_world_size(config, 2)


@pytest.mark.parametrize("order", [1, -1])
def test_naming_a_class_and_setting_its_key_on_one_command_line_keeps_both(order):
    # A plain dotlist would let policy.model.hidden_size=64 replace the name given just before it.
    overrides = ["policy.model=impala_ppo", "policy.model.hidden_size=64", "algorithm=ppo", "algorithm.update_epochs=2"]
    config = load_config("cartpole", overrides[::order])
    assert (config.policy.model.name, config.policy.model.hidden_size) == ("impala_ppo", 64)
    assert (config.algorithm.name, config.algorithm.update_epochs) == ("ppo", 2)


def test_a_value_and_a_key_inside_it_on_one_command_line_is_one_line():
    assert_user_error(cli("train", "env=coinrun", "env.task=bigfish"), "override 'env=coinrun' sets env to a value")
