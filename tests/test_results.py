"""The committed studies re-check: each `table.json` row follows from the evaluation files beside
it, methods are paired, and every checkpoint a table names is in the study folder and loads safely."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from duo_ai.core.checkpoint import FORMAT

ROOT = Path(__file__).resolve().parents[1]
TABLES = sorted((ROOT / "results").glob("*/report*/table.json"))


STUDY_TABLES = sorted((ROOT / "results").glob("*/table.json"))


def test_there_is_a_committed_study():
    assert TABLES, "no results/<study>/report*/table.json"
    assert STUDY_TABLES, "no results/<study>/table.json"


@pytest.mark.parametrize("path", STUDY_TABLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_study_table_is_one_of_its_reports_with_every_method_it_needs(path):
    """`results/<study>/table.json`, where a script looks, is a report's table (re-checked above),
    with the study's setting added (`Protocol.annotate`)."""
    reports = [json.loads(p.read_text()) for p in path.parent.glob("report*/table.json")]
    table = json.loads(path.read_text())
    setting = {key: table.pop(key) for key in ("setting", "train_env", "selection_split") if key in table}
    assert table in reports
    assert setting.get("setting", "skyline") in ("skyline", "realistic")
    methods = table["methods"]
    assert {"always_novice", "always_expert", "ppo"} <= set(methods)
    for name, row in methods.items():
        for key in ("checkpoint", "reward_mean", "reward_ci95", "expert_fraction", "num_episodes"):
            assert key in row, (name, key)


@pytest.mark.parametrize("path", TABLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_row_follows_from_its_evaluation_file(path):
    study, table = path.parent.parent, json.loads(path.read_text())
    for name, rows in table["per_weight"].items():
        assert [row["cost_weight"] for row in rows] == table["weights"], name
        for row in rows:
            data = json.loads((study / row["source"]).read_text())
            base, steps = np.array(data["episode_base_rewards"]), np.array(data["episode_expert_steps"])
            cost = row["cost_weight"] * steps + data["switch_agent_cost_weight"] * np.array(data["episode_switches"])
            rewards = base - cost * data["base_penalty"]
            assert len(rewards) == table["num_episodes"], (name, row["source"])
            assert rewards.mean() == pytest.approx(row["reward_mean"], abs=1e-5), (name, row["cost_weight"])
            half = 1.96 * np.std(rewards, ddof=1) / math.sqrt(len(rewards))
            assert half == pytest.approx(row["reward_ci95"], rel=1e-5), (name, row["cost_weight"])
            assert data["split"] == table["split"] and data["base_penalty"] == table["base_penalty"]


@pytest.mark.parametrize("path", TABLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_methods_are_paired_and_their_checkpoints_are_committed(path):
    study, table = path.parent.parent, json.loads(path.read_text())
    seeds = {
        name: json.loads((study / rows[0]["source"]).read_text())["episode_level_seeds"]
        for name, rows in table["per_weight"].items()
    }
    assert len({tuple(s) for s in seeds.values()}) == 1, "methods played different levels"
    for name, method in table["methods"].items():
        checkpoint = study / method["checkpoint"]
        assert checkpoint.is_file(), (name, method["checkpoint"])
        assert torch.load(checkpoint, map_location="cpu", weights_only=True)["format"] == FORMAT, name
