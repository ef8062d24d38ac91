"""Closed-loop driving in highway-env: a policy's waypoints steer the ego car through a simple
controller, and the episode says whether it crashed and how far it went.

The ego becomes a plain kinematic vehicle (highway-env's bicycle model) whose steering and
acceleration are set every policy step by :class:`WaypointController` — pure pursuit towards one
waypoint for the steering, a proportional speed controller towards the speed the waypoints imply.
Policies: ``expert`` (highway-env's IDM/MOBIL vehicle drives itself, as when recording), ``constant``
(speed and heading kept: no steering, no acceleration) or any function
``(frame, pose, command) -> waypoints (H, 2)`` in the ego frame (VaVAM's sampled trajectory).

Scenarios (NCAP-like, on top of the seeded traffic): ``traffic`` (nothing added), ``stopped`` (a
stopped car in the ego lane 40 m ahead), ``cut-in`` (a slower car 12 m ahead in the next lane that
moves into the ego lane).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rankopt.world.episodes import make_environment

__all__ = ["WaypointController", "drive", "SCENARIOS"]

SCENARIOS = ("traffic", "stopped", "cut-in")


@dataclass(frozen=True)
class WaypointController:
    """Waypoints (H, 2) in the ego frame, spaced ``spacing`` seconds apart → (acceleration m/s²,
    steering rad). Pure pursuit on waypoint ``lookahead`` (0-based): δ = atan(2 L sin α / d) with α its
    bearing, d its distance and L the car's length / 2 (highway-env's bicycle model); acceleration
    ``gain`` · (target − current speed), the target speed being the first waypoint's distance / spacing."""

    spacing: float
    lookahead: int = 1
    gain: float = 1.0
    half_length: float = 2.5
    max_steering: float = math.pi / 4
    max_acceleration: float = 5.0

    def __call__(self, waypoints: np.ndarray, speed: float) -> tuple[float, float]:
        x, y = waypoints[min(self.lookahead, len(waypoints) - 1)]
        d = math.hypot(x, y)
        steering = 0.0 if d < 1e-6 else math.atan2(2 * self.half_length * math.sin(math.atan2(y, x)), d)
        target = math.hypot(*waypoints[0]) / self.spacing
        if waypoints[0][0] < 0:  # a waypoint behind: stop
            target = 0.0
        accel = self.gain * (target - speed)
        return (
            float(np.clip(accel, -self.max_acceleration, self.max_acceleration)),
            float(np.clip(steering, -self.max_steering, self.max_steering)),
        )


def _add_scenario(sim, scenario: str) -> None:
    from highway_env.vehicle.behavior import IDMVehicle
    from highway_env.vehicle.kinematics import Vehicle

    if scenario == "traffic":
        return
    ego = sim.vehicle
    lane = sim.road.network.get_lane(ego.lane_index)
    long, _ = lane.local_coordinates(ego.position)
    if scenario == "stopped":
        car = Vehicle(sim.road, lane.position(long + 40, 0), lane.heading_at(long + 40), 0.0)
    elif scenario == "cut-in":
        side = ego.lane_index[2] + (1 if ego.lane_index[2] == 0 else -1)
        other = sim.road.network.get_lane((ego.lane_index[0], ego.lane_index[1], side))
        car = IDMVehicle(sim.road, other.position(long + 12, 0), other.heading_at(long + 12), ego.speed - 5)
        car.target_lane_index = ego.lane_index  # it moves into the ego lane at once
        car.enable_lane_change = False
    else:
        raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    # the scenario's car alone where it stands: traffic within 10 m of it leaves the road
    sim.road.vehicles = [
        v for v in sim.road.vehicles if v is ego or np.linalg.norm(v.position - car.position) >= 10
    ] + [car]


def drive(
    policy: str | Callable,
    scenario: str = "traffic",
    seed: int = 0,
    *,
    steps: int = 50,
    frame_shape: tuple[int, int] = (32, 64),
    density: float = 1.0,
    policy_hz: int = 5,
    controller: WaypointController | None = None,
    command: int = 1,
) -> dict:
    """One closed-loop episode; returns {"crashed", "progress" (m along the road), "steps", "speed"
    (mean m/s)}."""
    from highway_env.vehicle.behavior import IDMVehicle
    from highway_env.vehicle.kinematics import Vehicle

    env = make_environment(frame_shape, density, policy_hz, int(math.ceil(steps / policy_hz)) + 1)
    try:
        obs, _ = env.reset(seed=seed)
        sim = env.unwrapped
        old = sim.vehicle
        ego = IDMVehicle.create_from(old) if policy == "expert" else Vehicle.create_from(old)
        sim.road.vehicles[sim.road.vehicles.index(old)] = ego
        sim.vehicle = ego
        sim.action_type.controlled_vehicle = old  # env.step's action goes to the car off the road
        _add_scenario(sim, scenario)
        controller = controller or WaypointController(spacing=1.0 / policy_hz)
        start, speeds, crashed = float(ego.position[0]), [], False
        for _ in range(steps):
            if policy == "constant":
                ego.action = {"acceleration": 0.0, "steering": 0.0}
            elif policy != "expert":
                pose = np.array([ego.position[0], ego.position[1], ego.heading, ego.speed])
                waypoints = np.asarray(policy(np.ascontiguousarray(obs[0].T), pose, command), dtype=np.float64)
                accel, steer = controller(waypoints, ego.speed)
                ego.action = {"acceleration": accel, "steering": steer}
            obs, _, terminated, truncated, _ = env.step(1)  # drives the replaced car: ignored
            speeds.append(ego.speed)
            if ego.crashed:
                crashed = True
                break
            if terminated or truncated:
                break
        return {
            "crashed": crashed,
            "progress": float(ego.position[0]) - start,
            "steps": len(speeds),
            "speed": float(np.mean(speeds)) if speeds else 0.0,
        }
    finally:
        env.close()
