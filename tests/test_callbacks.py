"""`Trainer(config, callbacks=[...])`: the callback of docs/extending.md's "A training callback", and the
code that trains with it, run as they stand there on a tiny starpilot run; a run it stops ends saved,
and resumed it ends bit-identical to a run never stopped."""

from __future__ import annotations

import csv
import re

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from duo_ai.config import load_config
from duo_ai.core.checkpoint import load_checkpoint
from duo_ai.training import Trainer
from tests.conftest import TINY, cli
from tests.test_plugins import PAGE

SECTION = PAGE[PAGE.index("## A training callback") :]
MODULE = re.search(r"```python\n# my_callbacks\.py\n(.*?)```", SECTION, re.S).group(1)
USAGE = re.findall(r"```python\n(.*?)```", SECTION, re.S)[1]
# The tiny run, for 4 iterations of 4 envs x 32 steps: starpilot's first episodes end in the first one.
ITERATIONS = 4
SHORT = [*TINY, f"algorithm.total_timesteps={ITERATIONS * 128}"]


def episode_returns(run) -> list[float | None]:
    rows = list(csv.DictReader((run / "progress.csv").open()))
    return [float(row["episode_return"]) if row["episode_return"] else None for row in rows]


@pytest.mark.slow(seconds=20)
def test_the_pages_callback_logs_its_scalar_and_stops_a_run_that_resumes_exactly(tmp_path, monkeypatch):
    (tmp_path / "my_callbacks.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    # The page's code as it stands, but for the load_config it imports: here one that adds the tiny
    # run's settings to the config it loads (nothing is patched, so no other module sees it).
    page_import = "from duo_ai.config import load_config\n"
    assert page_import in USAGE
    page: dict = {"load_config": lambda path, overrides: load_config(path, [*overrides, *SHORT])}
    exec(USAGE.replace(page_import, ""), page)  # noqa: S102  (the documentation's own code)

    run = tmp_path / "experiments" / "starpilot_to_10"
    returns = episode_returns(run)
    # An untrained agent's mean return stays far below 10: the run went to its end.
    assert page["summary"]["iterations"] == ITERATIONS == len(returns) and max(r for r in returns if r is not None) < 10
    # custom/best_return: each new best of the mean return, logged at its step.
    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    logged = [(e.step, round(e.value, 5)) for e in events.Scalars("custom/best_return")]
    best, expected = -float("inf"), []
    for i, mean_return in enumerate(returns):
        if mean_return is not None and mean_return > best:
            best = mean_return
            expected.append((128 * (i + 1), round(mean_return, 5)))
    assert logged == expected and expected

    # Stopped once the mean return reaches the first one logged: after that iteration, with last.ckpt saved.
    StopAtReturn = page["StopAtReturn"]
    stop_at = expected[0][0] // 128
    config = load_config(overrides=[*SHORT, f"experiments_dir={tmp_path / 'experiments'}", "name=stopped"])
    with Trainer(config, show_progress=False, callbacks=[StopAtReturn(expected[0][1] - 1e-4)]) as trainer:
        summary = trainer.run()
    stopped = tmp_path / "experiments" / "stopped"
    assert summary["iterations"] == stop_at < ITERATIONS and (stopped / "summary.json").is_file()
    assert load_checkpoint(stopped / "last.ckpt")["iteration"] == stop_at
    assert f"stopped by a callback after iteration {stop_at} of {ITERATIONS}" in (stopped / "train.log").read_text()

    resumed = cli("train", "--resume", str(stopped), "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    after, reference = (load_checkpoint(r / "last.ckpt") for r in (stopped, run))
    assert after["iteration"] == ITERATIONS
    assert all(torch.equal(after["model_state_dict"][k], v) for k, v in reference["model_state_dict"].items())
