"""progress.csv / eval.csv, the seed statistics, `duo-ai plot`, `duo-ai compare` and `train --seeds`."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from duo_ai.core.errors import ConfigError
from duo_ai.logger import EVAL_COLUMNS, PROGRESS_COLUMNS, CsvLog
from duo_ai.reports import require
from duo_ai.reports.plot import build_series
from duo_ai.reports.records import group_runs, load_runs
from duo_ai.reports.stats import bootstrap_ci, interval, iqm
from duo_ai_cli.main import app
from tests.conftest import TINY, train_tiny
from tests.coord_fixtures import always_coordinators

CURVES_PAGE = Path(__file__).resolve().parents[1] / "docs" / "curves.md"
runner = CliRunner()


def duo_ai(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def seeds(tiny_run, tmp_path_factory) -> list[Path]:
    """Two seeds of one tiny experiment: the shared tiny run (seed 1) and the same run with seed 2."""
    second = train_tiny(tmp_path_factory.mktemp("seed2"), "tiny_s2", "seed=2")
    return [tiny_run, second]


# -- progress.csv and eval.csv ----------------------------------------------------------------------
def test_progress_csv_has_one_row_per_logged_iteration_across_a_resume(tiny_run, tmp_path):
    run = tmp_path / "resumed"
    shutil.copytree(tiny_run, run)
    result = duo_ai("train", "--resume", run, "algorithm.total_timesteps=512", "evaluation.num_episodes=0")
    assert result.exit_code == 0, result.output
    text = (run / "progress.csv").read_text()
    assert text.splitlines()[0] == ",".join(PROGRESS_COLUMNS) and text.count("iteration,") == 1
    rows = read_rows(run / "progress.csv")
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4]  # log_freq=1, 2 iterations per segment
    assert [int(r["step"]) for r in rows] == [128, 256, 384, 512]
    times = [float(r["time"]) for r in rows]
    assert times == sorted(times) and times[0] > 0  # the clock goes on across the resume
    for row in rows:
        for column in ("sps", "entropy", "policy_loss", "value_loss", "learning_rate"):
            assert float(row[column]) == float(row[column]), column  # a number, not empty
    evals = read_rows(run / "eval.csv")  # the first segment's final evaluation; none after the resume
    assert list(evals[0]) == list(EVAL_COLUMNS) and len(evals) == 1
    assert evals[0]["split"] == "test" and int(evals[0]["step"]) == 256 and int(evals[0]["num_episodes"]) == 2
    summary = json.loads((tiny_run / "summary.json").read_text())["eval"]["test"]
    assert float(evals[0]["reward_mean"]) == pytest.approx(summary["reward_mean"])
    assert evals[0]["expert_fraction"] == ""  # not a coordination run: an empty cell


def test_csv_log_appends_after_a_torn_line_and_sets_aside_another_format(tmp_path):
    path = tmp_path / "progress.csv"
    log = CsvLog(path, ("step", "value"))
    log.write({"step": 1, "value": 0.5})
    log.write({"step": 2})  # a missing stat: an empty cell
    log.close()
    with open(path, "a") as f:
        f.write("3,0.2")  # a crash in the middle of a row
    log = CsvLog(path, ("step", "value"))
    assert log.last == {"step": "2", "value": ""}
    log.write({"step": 3, "value": float("nan")})
    log.close()
    assert path.read_text() == "step,value\n1,0.5\n2,\n3,\n"
    CsvLog(path, ("step", "other")).close()
    assert (tmp_path / "progress.old.csv").read_text().startswith("step,value\n")
    assert path.read_text() == "step,other\n"


def test_csv_log_takes_an_older_layout_with_fewer_columns_into_the_new_header(tmp_path):
    path = tmp_path / "progress.csv"
    path.write_text("step,value\n1,0.5\n2,0.25\n3,0.125\n")  # written before the column `extra` existed
    log = CsvLog(path, ("step", "extra", "value"), resume_step=2)
    assert log.last == {"step": "2", "extra": "", "value": "0.25"}
    log.write({"step": 3, "extra": 7, "value": 0.5})
    log.close()
    # The old rows keep their cells under the new header; the row past the resume step is logged again.
    assert path.read_text() == "step,extra,value\n1,,0.5\n2,,0.25\n3,7,0.5\n"
    assert not (tmp_path / "progress.old.csv").exists()


def test_docs_document_every_csv_column():
    text = CURVES_PAGE.read_text()
    for column in (*PROGRESS_COLUMNS, *EVAL_COLUMNS):
        assert f"`{column}`" in text, column


# -- statistics over seeds --------------------------------------------------------------------------
def test_iqm_on_hand_made_arrays():
    assert iqm(np.arange(1, 9)) == pytest.approx(4.5)  # mean of 3, 4, 5, 6
    assert iqm([0.0, 0.0, 0.0, 10.0]) == pytest.approx(0.0)  # mean of the middle two
    assert iqm([1.0, 2.0, 6.0]) == pytest.approx(3.0)  # fewer than 4 values: the mean
    assert iqm([1.0, 2.0, 3.0, 4.0, 100.0]) == pytest.approx(3.0)  # drops 1 and 100
    np.testing.assert_allclose(iqm(np.array([[1, 2, 3, 4], [0, 0, 8, 8]]), axis=-1), [2.5, 4.0])


def test_bootstrap_interval_by_hand():
    # Two seeds a, b: resampled means are a, (a+b)/2, b with chances 1/4, 1/2, 1/4, so the
    # 2.5th and 97.5th percentiles are exactly min and max.
    assert interval([3.0, 7.0]).as_dict() == {"estimate": 5.0, "low": 3.0, "high": 7.0, "n": 2}
    assert interval([2.0, 2.0, 2.0], "iqm").as_dict() == {"estimate": 2.0, "low": 2.0, "high": 2.0, "n": 3}
    assert interval([4.0]).as_dict() == {"estimate": 4.0, "low": 4.0, "high": 4.0, "n": 1}
    # Per step (rows), with the same resampled seeds for every step, and reproducible.
    estimate, low, high = bootstrap_ci(np.array([[0.0, 1.0], [5.0, 5.0]]))
    np.testing.assert_allclose([estimate, low, high], [[0.5, 5.0], [0.0, 5.0], [1.0, 5.0]])
    values = np.array([1.0, 4.0, 2.0, 8.0, 5.0])
    a, b = interval(values, "iqm"), interval(values, "iqm")
    assert a == b and a.low <= a.estimate <= a.high and a.estimate == pytest.approx((2 + 4 + 5) / 3)
    assert values.min() <= a.low and a.high <= values.max()


def test_missing_plot_library_is_a_one_line_install_hint():
    expected = r"^duo-ai plot needs no_such_lib; install with: pip install 'duo-ai\[plots\]'$"
    with pytest.raises(ConfigError, match=expected):
        require("no_such_lib", "plot")


# -- duo-ai plot ------------------------------------------------------------------------------------
def test_plot_pools_seeds_into_one_line_with_their_interval(seeds, tmp_path):
    from PIL import Image

    out = tmp_path / "curves.png"
    result = duo_ai("plot", *seeds, "-o", out)
    assert result.exit_code == 0, result.output
    assert "1 run(s) in 1 group(s)" not in result.output and "2 run(s) in 1 group(s)" in result.output
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (900, 500)
    # The band of two seeds is their min and max (see test_bootstrap_interval_by_hand).
    groups = group_runs(load_runs(seeds))
    assert len(groups) == 1 and groups[0].label == "tiny" and groups[0].seeds == [1, 2]
    [train] = build_series(groups, "entropy", "mean")
    per_seed = np.stack([run.progress["entropy"] for run in groups[0].runs], axis=-1)
    np.testing.assert_array_equal(train.steps, [128, 256])
    np.testing.assert_allclose(train.estimate, per_seed.mean(-1))
    np.testing.assert_allclose(train.low, per_seed.min(-1))
    np.testing.assert_allclose(train.high, per_seed.max(-1))


def test_plot_writes_svg_of_another_metric(tiny_run, tmp_path):
    out = tmp_path / "entropy.svg"
    result = duo_ai("plot", tiny_run, "-o", out, "--metric", "entropy", "--agg", "iqm")
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "<svg" in text and "policy entropy (nats)" in text and "environment steps" in text


def test_plot_bad_input_is_a_one_line_error_before_any_work(tiny_run, tmp_path):
    out = tmp_path / "c.png"
    assert_one_line_error(duo_ai("plot", tmp_path, "-o", out), "not a run folder")
    assert_one_line_error(duo_ai("plot", tmp_path / "nope", "-o", out), "does not exist")
    other = tmp_path / "other_game"
    shutil.copytree(tiny_run, other)
    config = yaml.safe_load((other / "config.yaml").read_text())
    config["env"]["task"] = "bigfish"
    (other / "config.yaml").write_text(yaml.safe_dump(config))
    assert_one_line_error(duo_ai("plot", tiny_run, other, "-o", out), "different games", "starpilot", "bigfish")
    assert_one_line_error(duo_ai("plot", tiny_run, "-o", out, "-m", "expert_fraction"), "never logged")
    assert_one_line_error(duo_ai("plot", tiny_run, "-o", out, "-m", "losss"), "unknown --metric 'losss'", "entropy")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert_one_line_error(duo_ai("plot", tiny_run, "-o", blocker / "c.png"), "cannot be written")
    assert_one_line_error(duo_ai("plot", tiny_run, "-o", tmp_path / "c.jpg"), "unknown file type", ".png")
    (other / "progress.csv").unlink()
    assert_one_line_error(duo_ai("plot", other, "-o", out), "no progress.csv")
    assert not out.exists()


# -- duo-ai compare ---------------------------------------------------------------------------------
def test_compare_reports_the_interval_over_seeds(seeds, tiny_run, tmp_path):
    out = tmp_path / "compare.json"
    result = duo_ai("compare", *seeds, "--json", out)
    assert result.exit_code == 0, result.output
    [row] = json.loads(out.read_text())["rows"]
    finals = [json.loads((run / "summary.json").read_text())["eval"]["test"]["reward_mean"] for run in seeds]
    assert row["group"] == "tiny" and row["seeds"] == [1, 2] and row["split"] == "test"
    reward = row["reward_mean"]
    assert reward["per_run"] == finals and reward["estimate"] == pytest.approx(np.mean(finals))
    assert (reward["low"], reward["high"]) == (min(finals), max(finals))
    assert "expert_fraction" not in row and "tiny" in result.output
    # One run alone: its interval over episodes.
    result = duo_ai("compare", tiny_run, "--json", out)
    [row] = json.loads(out.read_text())["rows"]
    metrics = json.loads((tiny_run / "summary.json").read_text())["eval"]["test"]
    assert row["reward_mean"]["low"] == pytest.approx(metrics["reward_mean"] - metrics["reward_ci95"])


@pytest.mark.slow
def test_compare_and_plot_coordination_runs(tmp_path_factory, tmp_path):
    runs = always_coordinators(tmp_path_factory)
    out = tmp_path / "coord.json"
    result = duo_ai("compare", runs["novice"], runs["expert"], "--json", out)
    assert result.exit_code == 0, result.output
    rows = {(row["group"], row["split"]): row for row in json.loads(out.read_text())["rows"]}
    assert set(rows) == {(agent, split) for agent in ("novice", "expert") for split in ("test", "val_true")}
    for split in ("test", "val_true"):
        assert rows["novice", split]["expert_fraction"]["estimate"] == 0.0
        assert rows["expert", split]["expert_fraction"]["estimate"] == 1.0
        assert "auc" not in rows["novice", split] and "base_reward_mean" in rows["novice", split]  # no sweep
    png = tmp_path / "fraction.png"
    result = duo_ai("plot", runs["novice"], runs["expert"], "-o", png, "-m", "expert_fraction")
    assert result.exit_code == 0, result.output
    assert "novice: eval test" in result.output and "expert: eval val_true" in result.output


def test_compare_bad_input(tiny_run, tmp_path):
    assert_one_line_error(duo_ai("compare", tmp_path), "not a run folder")
    assert_one_line_error(duo_ai("compare", tiny_run, "--split", "val"), "split 'val'", "test")
    assert_one_line_error(duo_ai("compare", tiny_run, "--json", tmp_path / "out.txt"), "unknown file type")
    unfinished = tmp_path / "unfinished"
    shutil.copytree(tiny_run, unfinished)
    (unfinished / "summary.json").unlink()
    assert_one_line_error(duo_ai("compare", unfinished), "no summary.json", "--resume")


# -- duo-ai train --seeds ---------------------------------------------------------------------------
def test_train_seeds_print_commands(tmp_path):
    args = ["name=demo", "seed=9", f"experiments_dir={tmp_path}"]
    result = duo_ai("train", *args, "--seeds", "1,2,3", "--print-commands")
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3
    for seed, line in zip((1, 2, 3), lines, strict=True):
        assert line.startswith("duo-ai train ") and line.endswith(f"name=demo_s{seed} seed={seed}")
        assert "seed=9" not in line and "name=demo " not in line
    assert not list(tmp_path.iterdir())  # nothing was trained


def test_train_seeds_runs_each_seed_in_turn(tmp_path):
    tiny = [o for o in TINY if not o.startswith(("algorithm.total_timesteps", "evaluation.num_episodes"))]
    args = [*tiny, "algorithm.total_timesteps=128", "evaluation.num_episodes=0", f"experiments_dir={tmp_path}"]
    result = duo_ai("train", *args, "name=multi", "--seeds", "3,4", "--no-progress")
    assert result.exit_code == 0, result.output
    for seed in (3, 4):
        config = yaml.safe_load((tmp_path / f"multi_s{seed}" / "config.yaml").read_text())
        assert config["seed"] == seed and config["name"] == f"multi_s{seed}"
        assert len(read_rows(tmp_path / f"multi_s{seed}" / "progress.csv")) == 1
    # Existing seed folders stop the whole batch before any training.
    result = duo_ai("train", *args, "name=multi", "--seeds", "5,4")
    assert_one_line_error(result, "multi_s4", "already exists")
    assert not (tmp_path / "multi_s5").exists()
    assert_one_line_error(duo_ai("train", "--seeds", "1,x"), "--seeds", "1,x")
    assert_one_line_error(duo_ai("train", "--seeds", "1,1"), "distinct")
    assert_one_line_error(duo_ai("train", "--print-commands"), "--seeds")
    assert re.search(r"--seeds", duo_ai("train", "--help").output)
