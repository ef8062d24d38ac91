"""Training windows of tokenised episodes, and the copy-the-last-frame baseline of VaViM's perplexity.

A window is ``frames`` consecutive steps of one episode: the frame tokens (frames, h, w), the expert's
command at each step, and at each step the ``horizon`` future waypoints in that step's ego frame
(``stride`` policy steps apart) — what the action block of that frame is trained to produce. Windows
start every ``step`` steps where all of their waypoints lie inside the episode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from rankopt.world.trajectories import future_waypoints

__all__ = ["Windows", "make_windows", "copy_rate", "copy_last_frame_nll"]


@dataclass
class Windows:
    tokens: torch.Tensor  # (N, frames, h, w) int64
    commands: torch.Tensor  # (N, frames) int64
    waypoints: torch.Tensor  # (N, frames, horizon, 2) float32, ego frame of each step
    episode: torch.Tensor  # (N,) which episode each window comes from
    start: torch.Tensor  # (N,) its first step
    speed: torch.Tensor  # (N,) the ego speed (m/s) at its last frame: the constant-velocity baseline's

    def __len__(self) -> int:
        return len(self.tokens)


def make_windows(
    episodes: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    frames: int,
    horizon: int,
    stride: int = 1,
    step: int = 1,
) -> Windows:
    """Windows of every episode given as (tokens (T, h, w), poses (T, 4), commands (T,))."""
    out = {k: [] for k in ("tokens", "commands", "waypoints", "episode", "start", "speed")}
    for e, (tokens, poses, commands) in enumerate(episodes):
        last_start = len(tokens) - frames - stride * horizon  # the last step's waypoints must exist
        for s in range(0, last_start + 1, step):
            out["tokens"].append(tokens[s : s + frames])
            out["commands"].append(commands[s : s + frames])
            out["waypoints"].append(np.stack([future_waypoints(poses, s + f, horizon, stride) for f in range(frames)]))
            out["episode"].append(e)
            out["start"].append(s)
            out["speed"].append(poses[s + frames - 1, 3])
    if not out["tokens"]:
        raise ValueError(
            f"no window of {frames} frames with {horizon} × {stride} steps of waypoints fits in episodes of at most "
            f"{max((len(t) for t, _, _ in episodes), default=0)} steps"
        )
    return Windows(
        torch.as_tensor(np.stack(out["tokens"]), dtype=torch.long),
        torch.as_tensor(np.stack(out["commands"]), dtype=torch.long),
        torch.as_tensor(np.stack(out["waypoints"]), dtype=torch.float32),
        torch.as_tensor(out["episode"]),
        torch.as_tensor(out["start"]),
        torch.as_tensor(out["speed"], dtype=torch.float32),
    )


def copy_rate(tokens: torch.Tensor) -> float:
    """The share of tokens (frames 2..T of each window) equal to the token at the same place one frame
    earlier: the maximum-likelihood copy probability of the baseline."""
    same = tokens[:, 1:] == tokens[:, :-1]
    return float(same.float().mean())


def copy_last_frame_nll(tokens: torch.Tensor, p_copy: float, vocab: int) -> float:
    """Mean negative log-likelihood (nats) of frames 2..T under the copy-the-last-frame model: the token at
    the same place one frame earlier with probability ``p_copy``, any other with (1 − p_copy)/(vocab − 1).
    Its exponential is the baseline's perplexity."""
    if not 0 < p_copy < 1:
        raise ValueError(f"p_copy={p_copy} must be strictly between 0 and 1 (a probability of every token)")
    same = (tokens[:, 1:] == tokens[:, :-1]).double()
    nll = -(same * math.log(p_copy) + (1 - same) * math.log((1 - p_copy) / (vocab - 1)))
    return float(nll.mean())
