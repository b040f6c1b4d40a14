"""`duo-ai video`: record full episodes of a checkpoint's agent as MP4, GIF, or a PNG frame strip.

Procgen: the frames are the agent's own observations (64x64 RGB, the ones the policy acts on).
MiniGrid: the agent sees a 7x7 symbolic view, so the frames are the whole grid drawn by MiniGrid
(8 pixels a cell, the agent's view highlighted). Frames are upscaled with nearest-neighbour so
every game pixel stays a sharp square. For a coordinator, each frame the expert acts on gets an
orange border (the coordination env reports who acted in `info["agent"]`: 0 the novice, 1 the
expert); novice frames are unmarked. Procgen can also render
512x512 frames (`render_mode="rgb_array"`, read from `get_info()[i]["rgb"]`); those are not what
the agent sees and are not used here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from duo_ai.config import Config
from duo_ai.core.checks import INT32_MAX, Rule, check_options
from duo_ai.core.errors import ConfigError
from duo_ai.core.files import atomic_path
from duo_ai.eval_job import EVAL_OPTIONS
from duo_ai.evaluation import play_episodes
from duo_ai.playing import load_for_playing
from duo_ai.reports import check_output, require

SUFFIXES = (".mp4", ".gif", ".png")
EXPERT_COLOR = (255, 140, 0)  # the border of frames where the expert acts
STRIP_GAP = 4  # white pixels between the frames of a strip


@dataclass
class Recording:
    """Frames [64, 64, 3] of whole episodes, who acted on each (-1: no coordinator), and the episodes."""

    frames: list[np.ndarray] = field(default_factory=list)
    agents: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    returns: list[float] = field(default_factory=list)
    level_seeds: list[int] = field(default_factory=list)

    def episode(self, index: int) -> range:
        start = sum(self.lengths[:index])
        return range(start, start + self.lengths[index])


def base_frame(env: Any, obs: Any) -> np.ndarray:
    """The first env's frame as [H, W, 3] uint8.

    Procgen: the observation itself (a coordination env's observation holds it in `base_obs`).
    MiniGrid: the whole grid drawn by the env (`render_frame`), not the agent's 7x7 symbolic view.
    """
    base = getattr(env, "base_env", env)
    if hasattr(base, "render_frame"):
        return base.render_frame(0, tile_size=8)
    frames = obs["base_obs"] if isinstance(obs, dict) else obs
    return np.array(np.asarray(frames[0]).transpose(1, 2, 0), copy=True, order="C")  # the env reuses its buffer


def record_episodes(policy: Any, env: Any, episodes: int, temperature: float, seed: int) -> Recording:
    """Run `policy` on a one-env `env` for `episodes` complete episodes, keeping every frame."""
    rec = Recording()
    for step in play_episodes(policy, env, episodes, temperature, seed, watch=lambda obs: base_frame(env, obs)):
        rec.frames.append(step.seen)
        rec.agents.append(int(step.info["agent"][0]) if "agent" in step.info else -1)
        if step.ended.size:
            episode = step.info["episode"]
            rec.lengths.append(int(episode["l"][0]))
            rec.returns.append(float(episode["r"][0]))
            rec.level_seeds.append(int(episode["level_seed"][0]))
    return rec


def render_frame(frame: np.ndarray, agent: int, scale: int) -> np.ndarray:
    """Upscale by `scale` (nearest neighbour); frames where the expert acts get an orange border."""
    big = frame.repeat(scale, axis=0).repeat(scale, axis=1)
    if agent == 1:
        edge = np.ones(big.shape[:2], dtype=bool)
        edge[2 * scale : -2 * scale, 2 * scale : -2 * scale] = False
        big[edge] = EXPERT_COLOR
    return big


def rendered(rec: Recording, scale: int) -> Iterator[np.ndarray]:
    for frame, agent in zip(rec.frames, rec.agents, strict=True):
        yield render_frame(frame, agent, scale)


def frame_strip(rec: Recording, count: int, scale: int) -> np.ndarray:
    """`count` frames evenly spaced over the first episode (first and last included), side by side."""
    steps = rec.episode(0)
    picks = np.unique(np.linspace(steps.start, steps.stop - 1, min(count, len(steps))).round().astype(int))
    tiles = [render_frame(rec.frames[i], rec.agents[i], scale) for i in picks]
    gap = np.full((tiles[0].shape[0], STRIP_GAP, 3), 255, dtype=np.uint8)
    return np.concatenate([part for tile in tiles for part in (gap, tile)][1:], axis=1)


def write_output(path: Path, rec: Recording, scale: int, fps: float, strip_frames: int) -> int:
    """Write the MP4, GIF or PNG strip (atomically); returns the number of frames written."""
    with atomic_path(path) as tmp:
        return encode(tmp, path.suffix.lower(), rec, scale, fps, strip_frames)


def encode(path: Path, suffix: str, rec: Recording, scale: int, fps: float, strip_frames: int) -> int:
    import imageio.v3 as iio

    if suffix == ".png":
        strip = frame_strip(rec, strip_frames, scale)
        iio.imwrite(path, strip)
        return (strip.shape[1] + STRIP_GAP) // (64 * scale + STRIP_GAP)
    if suffix == ".gif":
        iio.imwrite(path, np.stack(list(rendered(rec, scale))), duration=1000 / fps, loop=0)
        return len(rec.frames)
    with iio.imopen(path, "w", plugin="pyav") as video:
        video.init_video_stream("libx264", fps=fps, pixel_format="yuv420p")
        for frame in rendered(rec, scale):
            video.write_frame(frame)
    return len(rec.frames)


# The command-line options of `duo-ai video` (checked like config fields: finite, in range).
VIDEO_OPTIONS = {
    "--episodes": Rule(ge=1, le=1000),
    "--temperature": Rule(ge=0),
    "--scale": Rule(ge=1, le=16),
    "--fps": Rule(ge=0.1, le=240),
    "--frames": Rule(ge=1, le=1000),
    "--seed": Rule(ge=0, le=INT32_MAX),
    "--split": EVAL_OPTIONS["--split"],
}


def check_video_args(
    out: Path, episodes: int, temperature: float | None, scale: int, fps: float, frames: int, seed: int | None,
    split: str | None,
) -> Path:  # fmt: skip
    out = check_output(out, SUFFIXES)
    check_options(VIDEO_OPTIONS, episodes, temperature, scale, fps, frames, seed, split)
    require("imageio", "video")
    if out.suffix.lower() == ".mp4":
        require("av", "video", "av (PyAV, the MP4 encoder)")
    return out


def record_checkpoint(
    checkpoint: str,
    out: Path,
    split: str | None = None,
    temperature: float | None = None,
    episodes: int = 1,
    seed: int | None = None,
    overrides: list[str] = (),
    scale: int = 4,
    fps: float = 15.0,
    strip_frames: int = 8,
    log: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """Record `episodes` episodes of a checkpoint's agent into `out` (.mp4, .gif, or .png strip): the
    first of the episodes `duo-ai eval` plays with the same `seed` and `split` (those of its first env)."""
    out = check_video_args(Path(out), episodes, temperature, scale, fps, strip_frames, seed, split)

    def check(path: str, config: Config) -> None:
        if config.env.name not in ("procgen", "minigrid"):
            raise ConfigError(
                f"duo-ai video records Procgen and MiniGrid games; {path} plays {config.env.name}/{config.env.task}"
            )

    with load_for_playing(
        checkpoint, split, seed, episodes, temperature, num_envs=1, overrides=overrides, check=check, log=log
    ) as playing:
        rec = record_episodes(playing.policy, playing.env, episodes, playing.temperature, playing.level_seed)
    written = write_output(out, rec, scale, fps, strip_frames)
    acted = [a for a in rec.agents if a >= 0]
    return {
        "output": str(out),
        "frames": written,
        "episode_lengths": rec.lengths,
        "episode_returns": rec.returns,
        "episode_level_seeds": rec.level_seeds,
        "expert_fraction": float(np.mean(acted)) if acted else None,
        "env": playing.task,
        "split": playing.split,
        "temperature": playing.temperature,
        "seed": playing.seed,
    }
