"""Driving episodes recorded in the highway-env simulator: the video a world model learns from.

An IDM/MOBIL expert (highway-env's ``IDMVehicle``, created from the ego car) drives; every policy step
records the rendered grey frame, the ego pose (x, y, heading, speed) and the expert's high-level
command — the sign of (target lane − current lane): 0 = left, 1 = keep, 2 = right. Episodes are
seeded; several traffic densities give varied scenes. A dataset folder holds ``manifest.json`` (the
simulator settings, the frame size, and each episode's file, length and split) and one
``episodes/NNNN.npz`` per episode (``frames`` (T, H, W) uint8, ``poses`` (T, 4) float, ``commands``
(T,) int64, ``crashed`` bool). Splits are by episode.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rankopt.atomic import atomic_write, atomic_write_text

__all__ = [
    "Episode",
    "EpisodeSet",
    "record_episodes",
    "read_episodes",
    "make_environment",
    "COMMANDS",
    "MANIFEST_VERSION",
]

COMMANDS = ("left", "keep", "right")
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Episode:
    frames: np.ndarray  # (T, H, W) uint8
    poses: np.ndarray  # (T, 4): x, y (m, world frame), heading (rad), speed (m/s)
    commands: np.ndarray  # (T,) int64 in 0..2
    crashed: bool


@dataclass(frozen=True)
class EpisodeSet:
    root: Path
    manifest: dict

    @property
    def frame_shape(self) -> tuple[int, int]:
        return tuple(self.manifest["frame_shape"])

    def names(self, split: str) -> list[str]:
        return [e["file"] for e in self.manifest["episodes"] if e["split"] == split]

    def load(self, file: str) -> Episode:
        path = self.root / file
        try:
            with np.load(path) as z:
                ep = Episode(z["frames"], z["poses"], z["commands"].astype(np.int64), bool(z["crashed"]))
        except (OSError, KeyError, ValueError) as err:
            raise ValueError(f"episode {path} cannot be read ({' '.join(str(err).split())[:120]})") from None
        entry = next(e for e in self.manifest["episodes"] if e["file"] == file)
        if ep.frames.shape[1:] != self.frame_shape or ep.frames.dtype != np.uint8:
            raise ValueError(
                f"episode {path}: frames of shape {ep.frames.shape[1:]} ({ep.frames.dtype}); the manifest "
                f"says {self.frame_shape} uint8"
            )
        n = len(ep.frames)
        if n != entry["length"] or ep.poses.shape != (n, 4) or ep.commands.shape != (n,):
            raise ValueError(
                f"episode {path}: {n} frames, poses {ep.poses.shape}, commands {ep.commands.shape}; the manifest "
                f"says {entry['length']} steps"
            )
        if ep.commands.size and (ep.commands.min() < 0 or ep.commands.max() > 2):
            raise ValueError(f"episode {path}: a command outside 0..2 (left, keep, right)")
        return ep


def make_environment(frame_shape: tuple[int, int], density: float, policy_hz: int, duration: int):
    """highway-v0 (3 lanes, 20 cars) rendering grey frames of ``frame_shape`` offscreen."""
    os.environ.setdefault("SDL_VIDEODRIVER", "offscreen")  # with 'dummy' every rendered frame is black
    try:
        import gymnasium as gym
        import highway_env  # noqa: F401  (registers the environments)
    except ImportError:
        raise ImportError("rankopt drive needs highway-env: pip install 'rankopt[world]'") from None
    h, w = frame_shape
    return gym.make(
        "highway-v0",
        config={
            "offscreen_rendering": True,
            "lanes_count": 3,
            "vehicles_count": 20,
            "vehicles_density": density,
            "duration": duration,
            "policy_frequency": policy_hz,
            "simulation_frequency": 15,
            "observation": {
                "type": "GrayscaleObservation",
                "observation_shape": (w, h),
                "stack_size": 1,
                "weights": [0.2989, 0.5870, 0.1140],
                "scaling": 1.75,
            },
        },
    )


def _drive(env, seed: int, steps: int) -> Episode:
    from highway_env.vehicle.behavior import IDMVehicle

    obs, _ = env.reset(seed=seed)
    sim = env.unwrapped
    expert = IDMVehicle.create_from(sim.vehicle)  # the ego car, now driven by IDM (speed) + MOBIL (lanes)
    sim.road.vehicles[sim.road.vehicles.index(sim.vehicle)] = expert
    sim.action_type.controlled_vehicle = sim.vehicle  # env.step's action goes to the car off the road
    sim.vehicle = expert
    frames, poses, commands, crashed = [], [], [], False
    for _ in range(steps):
        v = sim.vehicle
        frames.append(np.ascontiguousarray(obs[0].T))  # highway-env's observation is (width, height)
        poses.append((v.position[0], v.position[1], v.heading, v.speed))
        commands.append(int(np.sign(v.target_lane_index[2] - v.lane_index[2])) + 1)
        obs, _, terminated, truncated, _ = env.step(1)  # the action drives the replaced car: ignored
        crashed = bool(sim.vehicle.crashed)
        if terminated or truncated:
            break
    return Episode(
        np.stack(frames).astype(np.uint8), np.asarray(poses, dtype=np.float64), np.asarray(commands), crashed
    )


def record_episodes(
    root: str | Path,
    n_episodes: int,
    seed: int = 0,
    *,
    steps: int = 60,
    frame_shape: tuple[int, int] = (32, 64),
    densities: tuple[float, ...] = (1.0, 1.5),
    policy_hz: int = 5,
    splits: tuple[float, float] = (0.7, 0.15),
    progress=None,
) -> EpisodeSet:
    """Record ``n_episodes`` expert episodes of up to ``steps`` policy steps into ``root`` (episodes
    cycle through ``densities``; episode k is seeded by seed·10⁶ + k), split train / valid / test by
    episode in the shares ``splits`` (the rest: test). The manifest is written last, atomically: a
    folder without one is an unfinished recording."""
    root = Path(root)
    if n_episodes < 3:
        raise ValueError(f"n_episodes={n_episodes}: train, valid and test need an episode each")
    h, w = frame_shape
    if h % 4 or w % 4:
        raise ValueError(f"frame_shape={frame_shape}: height and width must be multiples of 4 (the tokenizer's stride)")
    n_train = max(1, int(round(splits[0] * n_episodes)))
    n_valid = max(1, int(round(splits[1] * n_episodes)))
    if n_train + n_valid >= n_episodes:
        n_train = n_episodes - n_valid - 1
    (root / "episodes").mkdir(parents=True, exist_ok=True)
    entries = []
    envs = {d: make_environment(frame_shape, d, policy_hz, int(np.ceil(steps / policy_hz)) + 1) for d in densities}
    try:
        for k in range(n_episodes):
            density = densities[k % len(densities)]
            ep = _drive(envs[density], seed * 1_000_000 + k, steps)
            file = f"episodes/{k:04d}.npz"
            atomic_write(
                root / file,
                lambda f, ep=ep: np.savez_compressed(
                    f, frames=ep.frames, poses=ep.poses, commands=ep.commands, crashed=ep.crashed
                ),
            )
            split = "train" if k < n_train else ("valid" if k < n_train + n_valid else "test")
            entries.append(
                {"file": file, "length": len(ep.frames), "split": split, "density": density, "crashed": ep.crashed}
            )
            if progress is not None:
                progress.update(1)
    finally:
        for env in envs.values():
            env.close()
    manifest = {
        "version": MANIFEST_VERSION,
        "simulator": "highway-env highway-v0",
        "expert": "IDMVehicle (IDM + MOBIL)",
        "frame_shape": [h, w],
        "policy_hz": policy_hz,
        "seed": seed,
        "commands": list(COMMANDS),
        "episodes": entries,
    }
    atomic_write_text(root / "manifest.json", json.dumps(manifest, indent=1))
    return EpisodeSet(root, manifest)


def read_episodes(root: str | Path) -> EpisodeSet:
    """A recorded dataset folder, its manifest checked (the episodes are checked when loaded)."""
    root = Path(root)
    path = root / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: not a recorded episode folder (or its recording did not finish)"
        )
    try:
        manifest = json.loads(path.read_text())
        version, shape, entries = manifest["version"], manifest["frame_shape"], manifest["episodes"]
        for e in entries:
            e["file"], e["length"], e["split"]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is not a valid episode manifest ({type(err).__name__}: {err})") from None
    if version != MANIFEST_VERSION:
        raise ValueError(f"{path}: manifest version {version}; this rankopt reads version {MANIFEST_VERSION}")
    if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(v, int) and v > 0 for v in shape)):
        raise ValueError(f"{path}: frame_shape {shape!r} is not [height, width]")
    missing = [e["file"] for e in entries if not (root / e["file"]).is_file()]
    if missing:
        raise FileNotFoundError(f"{path} lists {len(missing)} episode files that are missing, e.g. {missing[0]}")
    for split in ("train", "valid", "test"):
        if not any(e["split"] == split for e in entries):
            raise ValueError(f"{path}: no {split} episode")
    return EpisodeSet(root, manifest)
