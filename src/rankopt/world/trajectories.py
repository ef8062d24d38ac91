"""Ego trajectories: future waypoints in the ego frame, the constant-velocity baseline, minADE.

The ego frame at step t: origin at the ego position, x along its heading, y to its right-hand side as
highway-env's y axis (lanes numbered left to right) is turned with it. Waypoint k (1..H) is the ego
position ``stride`` · k policy steps later, expressed in that frame.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["future_waypoints", "constant_velocity", "min_ade", "to_world"]


def _rotation(heading: float) -> np.ndarray:
    c, s = np.cos(heading), np.sin(heading)
    return np.array([[c, s], [-s, c]])  # world → ego: rotate by −heading


def future_waypoints(poses: np.ndarray, t: int, horizon: int, stride: int = 1) -> np.ndarray:
    """(horizon, 2) positions at steps t + stride·k, k = 1..horizon, in the ego frame at step t;
    ``poses`` (T, ≥3): x, y, heading, …"""
    last = t + stride * horizon
    if last >= len(poses):
        raise ValueError(
            f"waypoints up to step {last} from step {t}, but the episode has {len(poses)} steps: a horizon of "
            f"{horizon} × {stride} steps is longer than what is left of the episode"
        )
    x, y, heading = poses[t, 0], poses[t, 1], poses[t, 2]
    ahead = poses[t + stride : last + 1 : stride, :2] - np.array([x, y])
    return ahead @ _rotation(heading).T


def to_world(waypoints: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Ego-frame waypoints (H, 2) back to world coordinates, given the ego pose (x, y, heading, …)."""
    return waypoints @ _rotation(pose[2]) + pose[:2]


def constant_velocity(poses: np.ndarray, t: int, horizon: int, stride: int, dt: float) -> np.ndarray:
    """The baseline: the ego keeps its speed and heading; waypoint k at (speed · k · stride · dt, 0)."""
    speed = poses[t, 3]
    k = np.arange(1, horizon + 1)
    return np.stack([speed * k * stride * dt, np.zeros(horizon)], axis=1)


def min_ade(samples: torch.Tensor, truth: torch.Tensor, k: int) -> torch.Tensor:
    """minADE@k per trajectory: the smallest, over the first ``k`` samples, of the mean Euclidean
    distance between predicted and true waypoints. samples (B, K, H, 2), truth (B, H, 2) → (B,)."""
    if k > samples.shape[1]:
        raise ValueError(f"minADE@{k} needs {k} samples per trajectory; got {samples.shape[1]}")
    ade = (samples[:, :k] - truth[:, None]).norm(dim=-1).mean(-1)  # (B, k)
    return ade.min(1).values
