"""Windows of episodes and the copy-the-last-frame baseline, by hand and by loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rankopt.world.sequences import copy_last_frame_nll, copy_rate, make_windows
from rankopt.world.trajectories import future_waypoints


def _episode(n, seed):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 5, size=(n, 2, 2))
    poses = np.stack([np.arange(n) * 2.0, rng.normal(0, 0.1, n), np.zeros(n), np.full(n, 10.0)], axis=1)
    return tokens, poses, rng.integers(0, 3, n)


def test_windows_cover_every_start_whose_waypoints_exist():
    eps = [_episode(12, 0), _episode(9, 1)]
    w = make_windows(eps, frames=3, horizon=2, stride=2, step=1)
    # episode of 12 steps: starts 0..(12 − 3 − 4) = 0..5; of 9 steps: 0..2
    assert w.start.tolist() == [0, 1, 2, 3, 4, 5, 0, 1, 2] and w.episode.tolist() == [0] * 6 + [1] * 3
    assert w.speed.tolist() == [10.0] * 9
    k = 4  # window of episode 0 starting at 4
    tokens, poses, commands = eps[0]
    assert torch.equal(w.tokens[k], torch.as_tensor(tokens[4:7]))
    assert torch.equal(w.commands[k], torch.as_tensor(commands[4:7]))
    for f in range(3):
        np.testing.assert_allclose(w.waypoints[k, f].numpy(), future_waypoints(poses, 4 + f, 2, 2), rtol=1e-6)
    with pytest.raises(ValueError, match="no window of 3 frames with 5 × 2 steps"):
        make_windows(eps, frames=3, horizon=5, stride=2)


def test_copy_baseline_by_a_loop():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 3, (4, 5, 2, 3), generator=g)
    same = total = 0
    for n in range(4):
        for t in range(1, 5):
            for i in range(2):
                for j in range(3):
                    total += 1
                    same += int(tokens[n, t, i, j] == tokens[n, t - 1, i, j])
    assert copy_rate(tokens) == pytest.approx(same / total)
    p, vocab = 0.6, 7
    expected = -(same * math.log(p) + (total - same) * math.log((1 - p) / (vocab - 1))) / total
    assert copy_last_frame_nll(tokens, p, vocab) == pytest.approx(expected)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        copy_last_frame_nll(tokens, 1.0, vocab)
