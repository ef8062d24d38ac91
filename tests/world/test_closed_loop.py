"""Closed-loop driving: the controller by hand, and the scenarios doing what they claim (the IDM expert
brakes for a stopped car, driving straight on does not; a policy of straight waypoints at the current
speed drives like the constant-velocity policy)."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("highway_env")

from rankopt.world.closed_loop import WaypointController, drive


def test_controller_by_hand():
    c = WaypointController(spacing=0.5, lookahead=1, gain=2.0)
    straight = np.array([[5.0, 0.0], [10.0, 0.0]])
    assert c(straight, 10.0) == (0.0, 0.0)  # on speed (5 m per 0.5 s), straight ahead
    accel, steer = c(straight, 8.0)
    assert accel == pytest.approx(4.0) and steer == 0.0
    right = np.array([[5.0, 0.0], [8.0, 6.0]])  # waypoint 1 at bearing atan2(6, 8), distance 10
    _, steer = c(right, 10.0)
    assert steer == pytest.approx(math.atan2(2 * 2.5 * (6 / 10), 10)) and steer > 0
    accel, _ = c(np.array([[-1.0, 0.0], [-2.0, 0.0]]), 3.0)
    assert accel == pytest.approx(-5.0)  # waypoints behind: brake (clipped to 5 m/s²)


def test_scenarios_and_policies():
    stopped_expert = drive("expert", "stopped", seed=0, steps=40)
    stopped_constant = drive("constant", "stopped", seed=0, steps=40)
    assert not stopped_expert["crashed"] and stopped_constant["crashed"]
    free = drive("constant", "traffic", seed=3, steps=15, density=0.5)
    hz = 5

    def straight_on(frame, pose, command):
        assert frame.shape == (32, 64)
        k = np.arange(1, 7)
        return np.stack([pose[3] * k / hz, np.zeros(6)], axis=1)

    followed = drive(straight_on, "traffic", seed=3, steps=15, density=0.5)
    assert followed["crashed"] == free["crashed"]
    assert followed["progress"] == pytest.approx(free["progress"], rel=0.02)
    with pytest.raises(ValueError, match="unknown scenario 'rain'"):
        drive("constant", "rain", steps=1)
