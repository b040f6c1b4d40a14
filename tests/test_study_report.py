"""`duo-ai study-report`: paired statistics of a coordination study over hand-made eval JSON files.

The study: weights 0, 0.5 and 1, four paired episodes (levels 100, 101, 102, 103), base penalty 0.5.
- `ppo`, a file per weight, mean rewards 2.5, 1.5, 0.5: AUC = 0.5 x (2.5 + 1.5) / 2 + 0.5 x (1.5 + 0.5) / 2 = 1.5;
- `always_expert`, one file (at w = 0.5), base reward 10, episodes of 5, 6, 7, 8 expert steps: its reward
  at w is 10 - 0.5 x w x length, mean 10 - 3.25 w (10, 8.375, 6.75), AUC 8.375;
- `always_novice`, one file (at w = 0), base rewards 0, 1, 3, 2, never asks: the same at every weight.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from duo_ai.core.errors import ConfigError
from duo_ai.study.evals import load_evals
from duo_ai.study.report import NUM_RESAMPLES, paired_diff, ranked, study_report, summarize
from tests.conftest import assert_user_error, cli

WEIGHTS = (0.0, 0.5, 1.0)
LEVELS = [100, 101, 102, 103]
PENALTY = 0.5
PPO_RETURNS = {0.0: [1, 2, 3, 4], 0.5: [0, 1, 2, 3], 1.0: [0, 0, 1, 1]}
EXPERT_LENGTHS = [5, 6, 7, 8]
NOVICE_BASE = [0, 1, 3, 2]
REQUIRED = ("checkpoint", "reward_mean", "reward_ci95", "expert_fraction", "num_episodes")


def write_eval(evals: Path, method: str, weight: float, **episodes) -> Path:
    """One `duo-ai eval --json` file as the study expects it; returns (if not given) = base - costs."""
    n = len(episodes.get("levels", LEVELS))
    ep = {"base": [0.0] * n, "expert": [0] * n, "lengths": [10] * n, "switches": [0] * n, "levels": LEVELS}
    ep.update(episodes)
    switch_weight = ep.get("switch_weight", 0.0)
    base_penalty = ep.get("base_penalty", PENALTY)
    returns = ep.get("returns") or [
        b - (weight * e + switch_weight * s) * base_penalty
        for b, e, s in zip(ep["base"], ep["expert"], ep["switches"], strict=True)
    ]
    data = {
        "reward_mean": float(np.mean(returns)),
        "reward_std": float(np.std(returns, ddof=1)),
        "reward_ci95": 0.0,
        "base_reward_mean": float(np.mean(ep["base"])),
        "expert_fraction": sum(ep["expert"]) / sum(ep["lengths"]),
        "num_episodes": ep.get("num_episodes", n),
        "split": ep.get("split", "test"),
        "checkpoint": str(evals.parent / "experiments" / f"{method}_w{weight:g}" / "last.ckpt"),
        "cost_weight": weight,
        "base_penalty": base_penalty,
        "switch_agent_cost_weight": switch_weight,
        "env": "coinrun",
        "episode_returns": returns,
        "episode_base_rewards": ep["base"],
        "episode_expert_steps": ep["expert"],
        "episode_lengths": ep["lengths"],
        "episode_switches": ep["switches"],
        "episode_level_seeds": ep["levels"],
    }
    path = evals / method / f"w{weight:g}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def evals(tmp_path: Path) -> Path:
    evals = tmp_path / "study" / "evals"
    for w in WEIGHTS:
        write_eval(evals, "ppo", w, returns=PPO_RETURNS[w], expert=[2, 2, 2, 2], switches=[1, 1, 1, 1])
    write_eval(evals, "always_expert", 0.5, base=[10.0] * 4, expert=EXPERT_LENGTHS, lengths=EXPERT_LENGTHS)
    write_eval(evals, "always_novice", 0.0, base=NOVICE_BASE)
    return evals


def table_of(evals: Path, weight: float = 0.5) -> dict:
    return summarize(load_evals(evals), weight, evals.parent)


def means(table: dict, method: str) -> list[float]:
    return [row["reward_mean"] for row in table["per_weight"][method]]


# -- AUC and its bootstrap interval ---------------------------------------------------------------
def test_auc_by_hand_and_its_bootstrap_interval(evals):
    table = table_of(evals)
    assert table["weights"] == list(WEIGHTS)
    assert means(table, "ppo") == pytest.approx([2.5, 1.5, 0.5])
    auc = table["methods"]["ppo"]["auc"]
    assert auc["value"] == pytest.approx(1.5)
    assert auc["low"] < auc["value"] < auc["high"]
    # The interval is literally: resample episode indices (the same at every weight), recompute each
    # weight's mean and the trapezoid area, 2.5th and 97.5th percentiles.
    rewards = np.array([PPO_RETURNS[w] for w in WEIGHTS], dtype=np.float64)
    index = np.random.default_rng(0).integers(0, 4, size=(NUM_RESAMPLES, 4))
    resampled = rewards[:, index].mean(axis=-1)  # [weights, resamples]
    areas = 0.5 * (resampled[1:] + resampled[:-1]).sum(axis=0) / 2
    assert [auc["low"], auc["high"]] == pytest.approx(list(np.percentile(areas, [2.5, 97.5])))
    assert table["methods"]["always_expert"]["auc"]["value"] == pytest.approx(8.375)
    assert table["methods"]["always_novice"]["auc"]["value"] == pytest.approx(1.5)
    assert table["best_always_auc"] == "always_expert"
    diff = table["methods"]["ppo"]["auc_diff_vs_best_always"]
    assert diff["against"] == "always_expert" and diff["value"] == pytest.approx(1.5 - 8.375)
    assert diff["high"] < 0 and diff["excludes_zero"]


def test_bootstrap_interval_collapses_when_every_episode_is_the_same(evals):
    for w in WEIGHTS:
        write_eval(evals, "ppo", w, returns=[3 - 2 * w] * 4)
    auc = table_of(evals)["methods"]["ppo"]["auc"]
    assert auc["value"] == pytest.approx(2.0)
    assert auc["low"] == pytest.approx(2.0) and auc["high"] == pytest.approx(2.0)


# -- re-pricing a single always-agent file ------------------------------------------------------
def test_single_always_files_are_repriced_to_every_weight(evals):
    table = table_of(evals)
    expert = means(table, "always_expert")
    mean_length = np.mean(EXPERT_LENGTHS)  # 6.5 steps, all of them the expert's
    assert expert == pytest.approx([10.0, 8.375, 6.75])
    for w, reward in zip(WEIGHTS, expert, strict=True):
        assert expert[0] - reward == pytest.approx(w * PENALTY * mean_length, abs=1e-12)
    assert means(table, "always_novice") == [1.5, 1.5, 1.5]  # never asks: the same at every weight
    assert [r["expert_fraction"] for r in table["per_weight"]["always_expert"]] == [1.0, 1.0, 1.0]
    assert table["methods"]["always_expert"]["repriced"] and not table["methods"]["ppo"]["repriced"]
    # The per-weight interval over episodes: the expert's rewards at w = 1 are 7.5, 7, 6.5, 6.
    assert table["per_weight"]["always_expert"][2]["reward_ci95"] == pytest.approx(
        1.96 * np.std([7.5, 7, 6.5, 6], ddof=1) / 2
    )


def test_a_file_whose_rewards_do_not_match_its_costs_is_not_repriced(evals):
    write_eval(evals, "always_expert", 0.5, base=[10.0] * 4, expert=EXPERT_LENGTHS, returns=[9, 9, 9, 9])
    with pytest.raises(ConfigError, match="always_expert/w0.5.json cannot be re-priced"):
        load_evals(evals)


# -- paired differences at the study weight ------------------------------------------------------
def test_paired_difference_to_the_always_agents_by_hand(evals):
    table = table_of(evals, 0.5)
    assert table["best_always"] == "always_expert"  # 8.375 against the novice's 1.5 at w = 0.5
    diff = table["methods"]["ppo"]["diff_vs_best_always"]
    # ppo 0, 1, 2, 3 against the expert's 8.75, 8.5, 8.25, 8: differences -8.75, -7.5, -6.25, -5.
    assert diff["against"] == "always_expert" and diff["mean"] == pytest.approx(-6.875)
    assert diff["ci95"] == pytest.approx(1.96 * 1.25 * math.sqrt(5 / 3) / 2)
    assert diff["excludes_zero"]
    # ppo against the novice's 0, 1, 3, 2: differences 0, 0, -1, 1, mean 0: the interval holds 0.
    other = table["methods"]["ppo"]["diff_vs_other_always"]
    assert other["against"] == "always_novice" and other["mean"] == pytest.approx(0.0)
    assert other["ci95"] == pytest.approx(1.96 * math.sqrt(2 / 3) / 2) and not other["excludes_zero"]
    best = table["methods"]["always_expert"]["diff_vs_best_always"]
    assert best["mean"] == 0 and best["ci95"] == 0 and not best["excludes_zero"]


def test_paired_difference_of_one_episode_or_equal_differences_has_no_width():
    assert paired_diff(np.array([3.0]), np.array([1.0]), "x") | {"against": "x"} == {
        "against": "x", "mean": 2.0, "ci95": 0.0, "low": 2.0, "high": 2.0, "excludes_zero": True
    }  # fmt: skip
    assert paired_diff(np.ones(5), np.ones(5), "x")["excludes_zero"] is False


# -- refusals ------------------------------------------------------------------------------------
def test_a_different_level_seed_breaks_the_pairing(evals):
    write_eval(evals, "ppo", 0.5, returns=PPO_RETURNS[0.5], levels=[100, 101, 999, 103])
    with pytest.raises(ConfigError, match=r"ppo/w0.5.json breaks the pairing: its episode 2 is level 999"):
        load_evals(evals)


@pytest.mark.parametrize(
    "change, args, fragments",
    [
        ("levels", [], ["ppo/w1.json breaks the pairing", "episode 0 is level 7"]),
        ("missing_weight", [], ["missing evaluations: ppo at w1 (", "per weight 0, 0.5, 1;"]),
        ("", ["--weights", "0,0.25,0.5,1"], ["missing evaluations: ppo at w0.25; random at w0.25"]),
        ("", ["--weights", "0.5,0.5"], ["--weights takes distinct comma-separated weights"]),
        ("penalty", [], ["always_novice/w0.json breaks the pairing", "base_penalty is 0.25"]),
        ("split", [], ["always_novice/w0.json breaks the pairing", "split is 'train'"]),
        ("episodes", [], ["ppo/w0.json", "has 3 values but num_episodes is 4"]),
        ("not_json", [], ["ppo/w0.json is not valid JSON"]),
        ("bad_name", [], ["ppo/final.json: name it w<cost weight>.json"]),
        ("empty_method", [], ["method folder", "random has no w<weight>.json"]),
        ("misnamed_weight", [], ["ppo/w0.json: its cost_weight is 0.2, but the file is named for 0"]),
        ("", ["--weight", "0.3"], ["--weight 0.3 is not one of the study's cost weights: 0, 0.5, 1"]),
        ("", ["--evals", "missing"], ["EVALS", "is not a folder"]),
        ("", ["--evals", "empty"], ["holds no method folders"]),
        ("", ["--output", "file"], ["output folder", "cannot be written"]),
    ],
)
def test_bad_input_is_refused_with_one_line_before_writing(evals, tmp_path, change, args, fragments):
    out = tmp_path / "report"
    if change == "levels":
        write_eval(evals, "ppo", 1.0, returns=PPO_RETURNS[1.0], levels=[7, 101, 102, 103])
    elif change == "missing_weight":  # found from the other methods' files
        (evals / "ppo" / "w1.json").unlink()
    if change in ("missing_weight", ""):
        for w in WEIGHTS:
            write_eval(evals, "random", w, returns=PPO_RETURNS[w])
    elif change == "penalty":
        write_eval(evals, "always_novice", 0.0, base=NOVICE_BASE, base_penalty=0.25)
    elif change == "split":
        write_eval(evals, "always_novice", 0.0, base=NOVICE_BASE, split="train")
    elif change == "episodes":
        write_eval(evals, "ppo", 0.0, returns=[1, 2, 3], num_episodes=4, levels=[100, 101, 102])
    elif change == "not_json":
        (evals / "ppo" / "w0.json").write_text('{"reward_mean": ')
    elif change == "bad_name":
        (evals / "ppo" / "final.json").write_text("{}")
    elif change == "empty_method":
        (evals / "random").mkdir()
    elif change == "misnamed_weight":
        write_eval(evals, "ppo", 0.2, returns=PPO_RETURNS[0.0]).rename(evals / "ppo" / "w0.json")
    options = dict(zip(args[::2], args[1::2], strict=True))
    where = {"missing": tmp_path / "nowhere", "empty": tmp_path / "empty"}.get(options.get("--evals"), evals)
    (tmp_path / "empty").mkdir()
    if options.get("--output") == "file":
        out.write_text("a file, not a folder")
    grid = ["--weights", options["--weights"]] if "--weights" in options else []
    result = cli("study-report", where, "--weight", options.get("--weight", "0.5"), "-o", out, *grid)
    assert_user_error(result, *fragments)
    assert not out.is_dir()


# -- the command ---------------------------------------------------------------------------------
def test_study_report_writes_the_table_and_the_figure(evals, tmp_path):
    study = evals.parent
    out = tmp_path / "report"
    result = cli("study-report", evals, "--weight", "0.5", "-o", out, "--root", study)
    assert result.exit_code == 0, result.output
    for fragment in ("always_expert", "8.38 [8.12, 8.62]", "-6.88 ± 1.6*", "table.json"):
        assert fragment in result.stdout, (fragment, result.stdout)
    table = json.loads((out / "table.json").read_text())
    assert set(table["methods"]) == {"ppo", "always_expert", "always_novice"}
    assert table["cost_weight"] == 0.5 and table["split"] == "test" and table["num_episodes"] == 4
    assert table["base_penalty"] == PENALTY and table["weights"] == list(WEIGHTS)
    for name, method in table["methods"].items():
        assert set(REQUIRED) <= set(method), name
        assert method["num_episodes"] == 4
        assert isinstance(method["expert_fraction"], float)
    assert table["methods"]["ppo"]["checkpoint"] == "experiments/ppo_w0.5/last.ckpt"  # the one at w = 0.5
    assert table["methods"]["always_novice"]["checkpoint"] == "experiments/always_novice_w0/last.ckpt"
    assert table["methods"]["ppo"]["reward_mean"] == pytest.approx(1.5)
    assert table["methods"]["ppo"]["expert_fraction"] == pytest.approx(0.2)
    assert [row["cost_weight"] for row in table["per_weight"]["ppo"]] == list(WEIGHTS)
    with Image.open(out / "reward_vs_cost.png") as image:
        assert image.size == (900, 550)
    assert (out / "reward_vs_cost.svg").read_text().lstrip().startswith("<?xml")


def test_checkpoints_default_to_paths_relative_to_the_output_folder(evals, tmp_path):
    out = tmp_path / "study" / "report"
    table = study_report(evals, 0.0, out)
    assert table["methods"]["always_expert"]["checkpoint"] == "../experiments/always_expert_w0.5/last.ckpt"
    assert table["methods"]["ppo"]["checkpoint"] == "../experiments/ppo_w0/last.ckpt"
    assert table["best_always"] == "always_expert"
    # A report written inside EVALS is not taken for a method the next time.
    again = study_report(evals, 0.0, evals / "report")
    assert set(again["methods"]) == {"ppo", "always_expert", "always_novice"}
    assert set(study_report(evals, 0.0, evals / "report")["methods"]) == set(again["methods"])


def test_docs_document_the_command_and_every_key_of_table_json(evals, tmp_path):
    text = (Path(__file__).resolve().parents[1] / "docs" / "studies.md").read_text()
    assert "duo-ai study-report" in text
    table = study_report(evals, 0.5, tmp_path / "report")
    keys = {*table, *table["methods"]["ppo"], *table["methods"]["ppo"]["auc_diff_vs_best_always"]}
    keys |= {*table["methods"]["ppo"]["diff_vs_best_always"], *table["per_weight"]["ppo"][0]}
    keys -= {"outputs", "interval", "bootstrap", "evals"}  # what the command returns besides; self-describing
    assert not [key for key in sorted(keys) if f'"{key}"' not in text]


def test_one_weight_compares_the_methods_there_without_an_auc(evals, tmp_path):
    """`--weights W`: the paired comparison at the study's weight alone (e.g. on more episodes than
    the AUC's evaluations), ranked by reward; a single always_* file is re-priced to W."""
    out = tmp_path / "report"
    result = cli("study-report", evals, "--weight", "0.5", "--weights", "0.5", "-o", out, "--root", evals.parent)
    assert result.exit_code == 0, result.output
    table = json.loads((out / "table.json").read_text())
    assert table["weights"] == [0.5] and table["best_always_auc"] is None
    assert all(m["auc"] is None and m["auc_diff_vs_best_always"] is None for m in table["methods"].values())
    assert table["methods"]["ppo"]["reward_mean"] == pytest.approx(1.5)
    # always-expert re-priced to 0.5: 10 - 0.5 x 0.5 x length, lengths 5..8 (mean 6.5)
    assert table["methods"]["always_expert"]["reward_mean"] == pytest.approx(10 - 0.25 * 6.5)
    assert ranked(table)[0] == "always_expert"  # 8.375, then ppo and always-novice (both 1.5)
    assert "ranked by AUC" not in result.stdout
    with Image.open(out / "reward_vs_cost.png") as image:
        assert image.size == (900, 550)


def test_learned_coordinators_are_compared_with_every_baseline(evals):
    """ppo (and ppo_s<S>) against each other method and the best one, at the weight and in AUC."""
    for w in WEIGHTS:
        write_eval(evals, "ppo_s2", w, returns=[9.0, 9.0, 9.0, 9.0])
    table = table_of(evals, 0.5)
    assert table["best_baseline"] == "always_expert" and table["best_baseline_auc"] == "always_expert"
    ppo = table["methods"]["ppo"]
    assert ppo["diff_vs_best_baseline"] == ppo["diff_vs_best_always"]  # the always-expert is the best baseline
    assert set(ppo["diff_vs_baselines"]) == set(ppo["auc_diff_vs_baselines"]) == {"always_expert", "always_novice"}
    assert "ppo_s2" not in ppo["diff_vs_baselines"]  # another seed of PPO is not a baseline
    seed2 = table["methods"]["ppo_s2"]
    # 9 at every weight against the expert's 8.75, 8.5, 8.25, 8 at w = 0.5: +0.625 per episode.
    assert (
        seed2["diff_vs_best_baseline"]["mean"] == pytest.approx(0.625)
        and seed2["diff_vs_best_baseline"]["excludes_zero"]
    )
    assert seed2["auc_diff_vs_best_baseline"]["value"] == pytest.approx(
        9.0 - table["methods"]["always_expert"]["auc"]["value"]
    )
    assert "diff_vs_best_baseline" not in table["methods"]["always_novice"]
