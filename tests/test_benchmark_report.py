"""`duo-ai benchmark-report` over the committed MiniGrid study (skyline) and a copy of it made realistic.

The copy's report is edited so that its cell has another answer: ppo's AUC drops below ood's, and
logit's AUC is set to ood's (a tie: both win).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from duo_ai.reports.benchmark import benchmark
from tests.conftest import assert_user_error, cli

ROOT = Path(__file__).resolve().parents[1]
SKYLINE = ROOT / "results" / "minigrid_distshift"
KEYS = {
    "env", "setting", "method", "auc", "auc_interval", "reward", "reward_ci95", "weight", "study", "checkpoint",
    "auc_ratio_to_skyline_ppo",
}  # fmt: skip
ENV = "MiniGrid-DistShift2-v0"


def copy_study(to: Path, setting: str | None = None) -> Path:
    """The files of the committed study a benchmark reads, in a new folder (optionally in another setting)."""
    to.mkdir()
    shutil.copy(SKYLINE / "study.yaml", to)
    shutil.copy(SKYLINE / "table.json", to)
    (to / "report").mkdir()
    shutil.copy(SKYLINE / "report" / "table.json", to / "report")
    if setting is not None:
        study = yaml.safe_load((to / "study.yaml").read_text())
        study.update(setting=setting, train_game="MiniGrid-DistShift1-v0")
        (to / "study.yaml").write_text(yaml.safe_dump(study))
    return to


def edit_aucs(table: Path, **values: float) -> None:
    data = json.loads(table.read_text())
    for method, value in values.items():
        data["methods"][method]["auc"]["value"] = value
    table.write_text(json.dumps(data))


@pytest.fixture(scope="module")
def realistic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = copy_study(tmp_path_factory.mktemp("studies") / "realistic", "realistic")
    ood = json.loads((folder / "report" / "table.json").read_text())["methods"]["ood"]["auc"]["value"]
    edit_aucs(folder / "report" / "table.json", ppo=0.70, logit=ood)
    return folder


@pytest.fixture(scope="module")
def made(realistic: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("benchmark") / "out"
    result = cli("benchmark-report", SKYLINE, realistic, "-o", out)
    assert result.exit_code == 0, result.output
    return out, result


def load_strict(path: Path) -> dict:
    def refuse(name: str) -> None:
        raise ValueError(f"{name} in strict JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_records_ratios_and_wins(made, realistic):
    out, result = made
    bench = load_strict(out / "benchmark.json")
    assert set(bench) == {"records", "wins", "cells", "generated"}
    records = {(r["setting"], r["method"]): r for r in bench["records"]}
    assert all(set(r) == KEYS for r in bench["records"]) and len(records) == 18
    sky_ppo = records["skyline", "ppo"]
    assert sky_ppo["auc_ratio_to_skyline_ppo"] == 1.0
    assert sky_ppo["checkpoint"] == str(SKYLINE / "ppo_w0.4" / "best_val_true.ckpt")
    assert sky_ppo["reward"] == json.loads((SKYLINE / "table.json").read_text())["methods"]["ppo"]["reward_mean"]
    assert sky_ppo["weight"] == 0.4 and sky_ppo["study"] == str(SKYLINE)
    report = json.loads((SKYLINE / "report" / "table.json").read_text())["methods"]["ppo"]["auc"]
    assert sky_ppo["auc"] == report["value"] and sky_ppo["auc_interval"] == [report["low"], report["high"]]
    for method in ("ppo", "ood", "ppo_s2", "always_novice"):
        r = records["realistic", method]
        assert r["env"] == ENV and r["auc_ratio_to_skyline_ppo"] == r["auc"] / sky_ppo["auc"]
    assert records["realistic", "ppo"]["auc"] == 0.70
    # skyline: ppo_s2 has the highest AUC but takes no part; realistic: ood and logit tie
    assert bench["wins"]["skyline"]["ppo"] == 1 and "ppo_s2" not in bench["wins"]["overall"]
    assert {m for m, n in bench["wins"]["realistic"].items() if n} == {"ood", "logit"}
    assert bench["wins"]["overall"] == {
        "logit": 1, "ood": 1, "ppo": 1, "always_expert": 0, "always_novice": 0, "every_k": 0, "random": 0,
    }  # fmt: skip
    assert [(c["setting"], sorted(c["winners"])) for c in bench["cells"]] == [
        ("skyline", ["ppo"]),
        ("realistic", ["logit", "ood"]),
    ]
    assert bench["cells"][1]["train_env"] == "MiniGrid-DistShift1-v0"
    assert "ood" in result.stdout and "wins" in result.stdout


def test_markdown_and_figure(made):
    out, _ = made
    text = (out / "benchmark.md").read_text()
    assert f"| method | {ENV} (skyline) | {ENV} (realistic) |" in text
    assert "**0.763 [0.752, 0.773] (1.000)**" in text and "| ppo | 1 | 0 | 1 |" in text
    assert (out / "auc_ratio.png").read_bytes().startswith(b"\x89PNG")


def test_the_auc_report_of_auc_episodes_first_and_no_ratio_without_skyline(realistic, tmp_path):
    # A study with evaluation.auc_episodes: report/ holds the study's weight alone, report_auc/ the grid.
    folder = copy_study(tmp_path / "auc_apart", "realistic")
    (folder / "report_auc").mkdir()
    (folder / "report" / "table.json").replace(folder / "report_auc" / "table.json")
    shutil.copy(folder / "table.json", folder / "report" / "table.json")
    bench = benchmark([folder])
    assert [c["auc_table"] for c in bench["cells"]] == [str(folder / "report_auc" / "table.json")]
    assert all(r["auc_ratio_to_skyline_ppo"] is None for r in bench["records"])
    assert bench["wins"]["skyline"] == {} and bench["wins"]["realistic"]["ppo"] == 1


@pytest.mark.parametrize(
    "case, fragments",
    [
        ("empty", ("no study.yaml",)),
        ("no_report", ("has no report/table.json",)),
        ("one_weight", ("has no AUC", "weights=")),
        ("same_setting", ("both the skyline study of MiniGrid-DistShift2-v0",)),
        ("twice", ("is given twice",)),
        ("output_is_study", ("is the study folder",)),
        ("output_in_study", ("inside the study folder",)),
    ],
)
def test_refusals_are_one_line_and_write_nothing(tmp_path, case, fragments):
    sky = copy_study(tmp_path / "sky")
    out = tmp_path / "out"
    studies = [sky]
    if case == "empty":
        (tmp_path / "empty").mkdir()
        studies.append(tmp_path / "empty")
    elif case == "no_report":
        folder = copy_study(tmp_path / "other", "realistic")
        shutil.rmtree(folder / "report")
        studies.append(folder)
    elif case == "one_weight":
        shutil.copy(sky / "table.json", sky / "report" / "table.json")
    elif case == "same_setting":
        studies.append(copy_study(tmp_path / "again"))
    elif case == "twice":
        studies.append(sky)
    elif case == "output_is_study":
        out = sky
    elif case == "output_in_study":
        out = sky / "benchmark"
    result = cli("benchmark-report", *studies, "-o", out)
    assert_user_error(result, *fragments)
    assert not (out / "benchmark.json").exists() and not (tmp_path / "out").exists()


def test_help_names_the_outputs():
    result = cli("benchmark-report", "--help")
    assert result.exit_code == 0
    assert "benchmark.json" in result.output and "skyline" in result.output
