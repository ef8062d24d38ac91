"""VaVAM's flow matching and joint attention masks from their definitions: the mask written out by hand
from the authors' docstring, the path and velocity by their formulas, the time law's distribution, and
Euler sampling of velocity fields whose end point is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rankopt.world.flow import euler_sample, flow_matching_loss, flow_path, flow_velocity, sample_flow_time
from rankopt.world.masks import inference_attention_mask, joint_attention_mask


def test_joint_mask_equals_the_authors_drawing():
    # valeoai/VideoActionModel build_attention_mask docstring: 3 frames of 3 tokens, horizon 2
    # columns V11 V12 V13 V21 V22 V23 V31 V32 V33 H11 H12 H21 H22 H31 H32
    drawn = """
    x . . . . . . . . . . . . . .
    x x . . . . . . . . . . . . .
    x x x . . . . . . . . . . . .
    x x x x . . . . . . . . . . .
    x x x x x . . . . . . . . . .
    x x x x x x . . . . . . . . .
    x x x x x x x . . . . . . . .
    x x x x x x x x . . . . . . .
    x x x x x x x x x . . . . . .
    x x x . . . . . . x x . . . .
    x x x . . . . . . x x . . . .
    x x x x x x . . . . . x x . .
    x x x x x x . . . . . x x . .
    x x x x x x x x . . . . . x x
    x x x x x x x x x . . . . x x
    """
    # the drawing's last two rows show frame 3's actions seeing V31, V32 only: a typo in the docstring
    # (its code gives every visual token of frames ≤ t); the code is the reference
    expected = torch.tensor([[c == "x" for c in line.split()] for line in drawn.strip().splitlines()])
    expected[13:, 8] = True
    assert torch.equal(joint_attention_mask(3, 3, 2), expected)


def test_masks_by_rule_on_another_layout():
    frames, per, h = 4, 2, 3
    m = joint_attention_mask(frames, per, h)
    visual = frames * per
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            if i < visual:
                want = j <= i  # causal over visual tokens, never an action token
            else:
                t = (i - visual) // h  # the frame (0-based) of this action block
                same_block = j >= visual and (j - visual) // h == t
                want = same_block or j < (t + 1) * per
            assert m[i, j] == want, (i, j)
    inf = inference_attention_mask(frames, per, h)
    assert inf.shape == (visual + h, visual + h) and inf[visual:].all() and not inf[:visual, visual:].any()
    with pytest.raises(ValueError, match="horizon=0"):
        joint_attention_mask(2, 2, 0)


def test_path_and_velocity_by_their_formulas():
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(4, 6, 2, generator=g), torch.randn(4, 6, 2, generator=g)
    t = torch.tensor([0.0, 0.25, 0.5, 1.0])
    s = 1e-3
    psi = flow_path(x0, x1, t, s)
    for b in range(4):
        tb = float(t[b])
        torch.testing.assert_close(psi[b], (1 - (1 - s) * tb) * x0[b] + tb * x1[b])
    torch.testing.assert_close(psi[0], x0[0])  # noise at t = 0
    torch.testing.assert_close(psi[3], s * x0[3] + x1[3])  # the data (within σ) at t = 1
    # the velocity is the path's derivative: a finite difference in t
    eps = 1e-3
    x0d, x1d, td = x0.double(), x1.double(), t.double()
    fd = (flow_path(x0d, x1d, td + eps, s) - flow_path(x0d, x1d, td - eps, s)) / (2 * eps)
    torch.testing.assert_close(fd, flow_velocity(x0d, x1d, s), rtol=1e-9, atol=1e-9)
    assert flow_matching_loss(flow_velocity(x0, x1, s), x0, x1, s).item() == 0.0
    assert flow_matching_loss(torch.zeros_like(x0), x0, x1, s).item() == pytest.approx(
        float((flow_velocity(x0, x1, s) ** 2).mean())
    )


def test_beta_time_law_matches_its_distribution():
    t = sample_flow_time(200_000, "beta", 1e-3, torch.Generator().manual_seed(1)).numpy()
    z = 1 - t / (1 - 1e-3)  # back to Beta(1.5, 1): CDF z^1.5, mean 1.5 / 2.5
    assert t.min() >= 0 and t.max() < 1
    assert abs(z.mean() - 0.6) < 0.005
    for q in (0.1, 0.5, 0.9):
        assert abs((z <= q).mean() - q**1.5) < 0.005
    u = sample_flow_time(8, "uniform", generator=torch.Generator().manual_seed(2)).numpy()
    gaps = np.sort(u)
    assert np.allclose(np.diff(gaps), 1 / 8, atol=1e-5)  # stratified: one time per eighth
    with pytest.raises(ValueError, match="unknown flow time law 'cosine'"):
        sample_flow_time(3, "cosine")


def test_euler_lands_on_the_known_end_points():
    x0 = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    target = torch.tensor([[4.0, 4.0], [-1.0, 0.0]])
    # a constant velocity (the straight path's): exact for any number of steps
    out = euler_sample(lambda x, t: (target - x0).expand_as(x), x0, steps=10)
    torch.testing.assert_close(out, target)
    # dx/dt = a·x: Euler with n steps gives x0 (1 + a/n)^n exactly (the analytic e^a in the limit)
    a = 0.7
    out = euler_sample(lambda x, t: a * x, x0, steps=10)
    torch.testing.assert_close(out, x0 * (1 + a / 10) ** 10)
    # a time-dependent field dx/dt = 2t: Euler's left sums Σ 2 k/n · 1/n = (n − 1)/n
    out = euler_sample(lambda x, t: 2 * t[:, None].expand_as(x), x0, steps=4)
    torch.testing.assert_close(out, x0 + 3 / 4)
