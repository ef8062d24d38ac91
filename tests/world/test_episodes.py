"""Expert episodes recorded in highway-env: frames rendered (not black), poses that move forward,
commands that follow lane changes, a manifest the reader checks, and damaged folders named."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("highway_env")

from rankopt.world.episodes import read_episodes, record_episodes


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    root = tmp_path_factory.mktemp("episodes")
    return record_episodes(root, 4, seed=0, steps=25, frame_shape=(32, 64))


def test_episodes_are_rendered_driven_and_split(recorded):
    again = read_episodes(recorded.root)
    assert again.manifest == recorded.manifest
    assert [len(recorded.names(s)) for s in ("train", "valid", "test")] == [2, 1, 1]
    for name in recorded.names("train") + recorded.names("test"):
        ep = recorded.load(name)
        assert ep.frames.shape[1:] == (32, 64) and ep.frames.dtype == np.uint8
        assert ep.frames.std() > 5  # offscreen rendering draws the road and cars, not a black frame
        assert len(ep.frames) == 25 and not ep.crashed  # the IDM expert does not crash
        x, speed = ep.poses[:, 0], ep.poses[:, 3]
        assert np.all(np.diff(x) > 0) and np.all(speed > 10)  # driving forward on the highway
        assert set(np.unique(ep.commands)) <= {0, 1, 2}


def test_commands_follow_lane_changes(recorded):
    """A 'left'/'right' command is given while the expert changes lane: the lateral position then
    moves that way (lanes are numbered left to right, y grows to the right)."""
    moves = []
    for name in [e["file"] for e in recorded.manifest["episodes"]]:
        ep = recorded.load(name)
        for t in range(len(ep.commands) - 3):
            if ep.commands[t] != 1:
                moves.append((ep.commands[t], ep.poses[t + 3, 1] - ep.poses[t, 1]))
    assert moves  # seed 0 changes lanes in two of its four episodes
    for command, dy in moves:
        assert (dy < 0) if command == 0 else (dy > 0)


def test_damaged_folders_are_named(recorded, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(recorded.root, broken)
    (broken / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not a valid episode manifest"):
        read_episodes(broken)
    with pytest.raises(FileNotFoundError, match="not a recorded episode folder"):
        read_episodes(tmp_path / "nowhere")
    m = dict(recorded.manifest)
    m["frame_shape"] = [32, 48]
    (broken / "manifest.json").write_text(json.dumps(m))
    ds = read_episodes(broken)
    with pytest.raises(ValueError, match="frames of shape \\(32, 64\\)"):
        ds.load(ds.names("train")[0])
    (broken / "manifest.json").write_text(json.dumps(recorded.manifest))
    (broken / recorded.names("test")[0]).unlink()
    with pytest.raises(FileNotFoundError, match="episode files that are missing"):
        read_episodes(broken)
    with pytest.raises(ValueError, match="train, valid and test need an episode each"):
        record_episodes(tmp_path / "few", 2)
