"""Waypoints, the constant-velocity baseline and minADE against hand cases and loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rankopt.world.trajectories import constant_velocity, future_waypoints, min_ade, to_world


def test_waypoints_in_the_ego_frame_by_hand():
    # driving along x at 10 m/s, steps of 0.5 s, a lane change to the right (+y) from step 2
    poses = np.array([[0, 0, 0, 10], [5, 0, 0, 10], [10, 0.5, 0, 10], [15, 1.5, 0, 10], [20, 2, 0, 10]], float)
    np.testing.assert_allclose(future_waypoints(poses, 0, 2, stride=2), [[10, 0.5], [20, 2]])
    # heading 90°: the car drives along +y; a point 3 m further along +y is 3 m ahead (x), and
    # a point at +x in the world is on its left (−y in the ego frame)
    turned = np.array([[0, 0, math.pi / 2, 1], [0, 3, math.pi / 2, 1], [2, 3, math.pi / 2, 1]])
    np.testing.assert_allclose(future_waypoints(turned, 0, 2), [[3, 0], [3, -2]], atol=1e-12)
    np.testing.assert_allclose(to_world(future_waypoints(turned, 0, 2), turned[0]), turned[1:, :2], atol=1e-12)
    with pytest.raises(ValueError, match="horizon of 3 × 2 steps is longer than what is left"):
        future_waypoints(poses, 0, 3, stride=2)


def test_constant_velocity():
    poses = np.array([[7, 1, 0.3, 12.0]])
    np.testing.assert_allclose(constant_velocity(poses, 0, 3, stride=2, dt=0.2), [[4.8, 0], [9.6, 0], [14.4, 0]])


def test_min_ade_equals_a_loop():
    g = torch.Generator().manual_seed(0)
    samples, truth = torch.randn(4, 5, 6, 2, generator=g), torch.randn(4, 6, 2, generator=g)
    for k in (1, 3, 5):
        got = min_ade(samples, truth, k)
        for b in range(4):
            best = min(
                sum(math.dist(samples[b, s, h].tolist(), truth[b, h].tolist()) for h in range(6)) / 6 for s in range(k)
            )
            assert got[b].item() == pytest.approx(best, rel=1e-6)
    with pytest.raises(ValueError, match="minADE@6 needs 6 samples"):
        min_ade(samples, truth, 6)
