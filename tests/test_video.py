"""`duo-ai video`: full episodes of real checkpoints as MP4, GIF and PNG frame strips."""

from __future__ import annotations

import re

import imageio.v3 as iio
import numpy as np
import pytest
from typer.testing import CliRunner

from duo_ai.reports.video import EXPERT_COLOR, STRIP_GAP, Recording, frame_strip, record_checkpoint, render_frame
from duo_ai_cli.main import app
from tests.coord_fixtures import GAME, always_coordinators
from tests.test_reports import assert_one_line_error

runner = CliRunner()


def duo_ai(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def always(tmp_path_factory):
    """last.ckpt of always-novice and always-expert coordinators over the shared tiny starpilot agents."""
    return {agent: run / "last.ckpt" for agent, run in always_coordinators(tmp_path_factory).items()}


def test_mp4_holds_every_frame_of_the_recorded_episodes(tiny_run, tmp_path):
    out = tmp_path / "episode.mp4"
    ckpt = str(tiny_run / "last.ckpt")
    made = record_checkpoint(ckpt, out, episodes=2, scale=2, seed=5, overrides=[f"env.task={GAME}"])
    frames = iio.imread(out, plugin="pyav")
    assert made["frames"] == sum(made["episode_lengths"]) == frames.shape[0] and len(made["episode_lengths"]) == 2
    assert frames.shape[1:] == (128, 128, 3) and frames.dtype == np.uint8
    assert made["expert_fraction"] is None and made["split"] == "test"


def test_cli_writes_gif_and_strip(tiny_run, tmp_path):
    gif, strip = tmp_path / "episode.gif", tmp_path / "strip.png"
    args = ["--checkpoint", tiny_run / "last.ckpt", "--seed", "5", "-t", "0", f"env.task={GAME}"]
    result = duo_ai("video", *args, "-o", gif, "--scale", "1")
    assert result.exit_code == 0, result.output
    length = int(re.search(r"episode lengths \[(\d+)\]", result.output).group(1))
    frames = iio.imread(gif, index=None)
    assert frames.shape[1:3] == (64, 64) and 1 <= len(frames) <= length  # GIF merges repeated frames
    result = duo_ai("video", *args, "-o", strip, "--frames", "5", "--scale", "2")
    assert result.exit_code == 0, result.output
    image = iio.imread(strip)
    assert image.shape == (128, 5 * 128 + 4 * STRIP_GAP, 3)


def test_expert_steps_get_an_orange_border(always, tmp_path):
    corners = {}
    for agent, ckpt in always.items():
        out = tmp_path / f"{agent}.png"
        result = duo_ai("video", "--checkpoint", ckpt, "-o", out, "--frames", "3", "--scale", "2")
        assert result.exit_code == 0, result.output
        assert f"expert acted on {100.0 if agent == 'expert' else 0.0:.1f}% of steps" in result.output
        image = iio.imread(out)
        corners[agent] = [tuple(image[0, x]) for x in (0, 128 + STRIP_GAP, 2 * (128 + STRIP_GAP))]
    assert corners["expert"] == [EXPERT_COLOR] * 3
    assert EXPERT_COLOR not in corners["novice"]


def test_render_and_strip_on_a_hand_made_recording():
    frame = np.zeros((64, 64, 3), dtype=np.uint8)
    frame[10, 20] = (1, 2, 3)
    big = render_frame(frame, agent=0, scale=3)
    assert big.shape == (192, 192, 3) and (big[30:33, 60:63] == (1, 2, 3)).all() and big.sum() == 9 * 6
    marked = render_frame(frame, agent=1, scale=3)
    assert (marked[:6] == EXPERT_COLOR).all() and (marked[:, -6:] == EXPERT_COLOR).all()
    assert (marked[6:-6, 6:-6] == big[6:-6, 6:-6]).all()
    rec = Recording(frames=[np.full((64, 64, 3), i, dtype=np.uint8) for i in range(10)], agents=[0] * 10, lengths=[10])
    strip = frame_strip(rec, count=4, scale=1)
    assert [strip[0, i * (64 + STRIP_GAP), 0] for i in range(4)] == [0, 3, 6, 9]  # first to last, evenly


def test_video_bad_input(tiny_run, tmp_path):
    ckpt = tiny_run / "last.ckpt"
    assert_one_line_error(duo_ai("video", "--checkpoint", tmp_path / "no.ckpt", "-o", tmp_path / "a.mp4"), "not found")
    assert_one_line_error(duo_ai("video", "--checkpoint", ckpt, "-o", tmp_path / "a.avi"), "unknown file type", ".mp4")
    assert_one_line_error(duo_ai("video", "--checkpoint", ckpt, "-o", tmp_path / "a.mp4", "-n", "0"), "--episodes")
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_one_line_error(duo_ai("video", "--checkpoint", ckpt, "-o", blocker / "a.mp4"), "cannot be written")
    assert_one_line_error(duo_ai("video", "--checkpoint", ckpt, "-o", tmp_path / "a.mp4", "--split", "val"), "split")
    assert not list(tmp_path.glob("*.mp4"))
