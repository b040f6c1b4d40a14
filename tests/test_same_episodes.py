"""One `--seed`, one set of episodes: `duo-ai eval`, `video` and `ask-map` play the same levels."""

from __future__ import annotations

import json

from duo_ai.reports.video import record_checkpoint
from tests.conftest import cli
from tests.test_minigrid import TINY_MG


def test_eval_video_and_ask_map_play_the_same_levels_for_one_seed(tmp_path) -> None:
    result = cli("train", *TINY_MG, f"experiments_dir={tmp_path}", "name=agent", "--no-progress")
    assert result.exit_code == 0, result.output
    agent = tmp_path / "agent" / "last.ckpt"
    result = cli(
        "train", "-c", "minigrid_random", f"experiments_dir={tmp_path}", "name=random", "--no-progress",
        f"train_novice={agent}", f"train_expert={agent}", "coordination.base_penalty=0.5",
        "policy.candidates=[0.0,0.5]", "algorithm.num_episodes=2", "algorithm.num_envs=2", "env.num_envs=2",
        "evaluation.num_episodes=0", "num_threads=1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    coordinator = tmp_path / "random" / "last.ckpt"
    same = ["--seed", "3", "num_threads=1", "evaluation.num_envs=2"]  # 2 envs, 3 episodes each

    table = tmp_path / "eval.json"
    result = cli("eval", "--checkpoint", coordinator, "--split", "test", "-n", "6", "--json", table, *same)
    assert result.exit_code == 0, result.output
    evaluated = json.loads(table.read_text())["episode_level_seeds"]
    assert len(evaluated) == 6 and all(level >= 100_000 for level in evaluated)  # the test split's levels

    picture = tmp_path / "map.png"
    result = cli("ask-map", "--checkpoint", coordinator, "-o", picture, "-n", "6", *same)
    assert result.exit_code == 0, result.output
    mapped = json.loads(picture.with_suffix(".json").read_text())
    assert mapped["episode_level_seeds"] == evaluated and mapped["seed"] == 3

    # A video plays one env: the first env's episodes, which come first in eval's list.
    made = record_checkpoint(str(coordinator), tmp_path / "strip.png", "test", episodes=3, seed=3, overrides=same[2:])
    assert made["episode_level_seeds"] == evaluated[:3] and made["seed"] == 3
