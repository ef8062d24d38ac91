"""VaViM's and VaVAM's objectives against their definitions on a tiny model."""

from __future__ import annotations

import math

import pytest
import torch

from rankopt.world.flow import flow_path, flow_velocity, sample_flow_time
from rankopt.world.models import ActionExpert, JointModel, VideoGPT
from rankopt.world.objectives import flow_matching_step, next_token_loss, sample_trajectories


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    gpt = VideoGPT(vocab=11, frames=3, per_frame=4, dim=16, layers=2, head_dim=8)
    return JointModel(gpt, ActionExpert(gpt, dim=16, horizon=3)).eval()


def test_next_token_loss_is_the_mean_cross_entropy_of_every_next_token(model):
    tokens = torch.randint(0, 11, (2, 3, 2, 2), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model.gpt(tokens)
        flat = tokens.reshape(2, -1)
        terms = [
            -torch.log_softmax(logits[b, i].double(), 0)[flat[b, i + 1]]
            for b in range(2)
            for i in range(flat.shape[1] - 1)
        ]
        assert next_token_loss(model.gpt, tokens).item() == pytest.approx(torch.stack(terms).mean().item(), rel=1e-5)


def test_flow_matching_step_equals_the_formula_on_the_same_draws(model):
    g = torch.Generator().manual_seed(2)
    tokens = torch.randint(0, 11, (2, 3, 2, 2), generator=g)
    commands = torch.randint(0, 3, (2, 3), generator=g)
    waypoints = torch.randn(2, 3, 3, 2, generator=g) * 10
    with torch.no_grad():
        got = flow_matching_step(
            model, tokens, commands, waypoints, scale=5.0, generator=torch.Generator().manual_seed(7)
        )
        same = torch.Generator().manual_seed(7)  # the same draws, in the same order: noise, then times
        x1 = waypoints / 5.0
        x0 = torch.randn(x1.shape, generator=same)
        t = sample_flow_time(6, "beta", 1e-3, same).reshape(2, 3)
        v = model(tokens, flow_path(x0, x1, t, 1e-3), commands, t)
        expected = ((v - flow_velocity(x0, x1, 1e-3)) ** 2).mean()
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_samples_of_the_last_block_ignore_the_other_blocks(model):
    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(0, 11, (2, 3, 2, 2), generator=g)
    commands = torch.randint(0, 3, (2, 3), generator=g)
    a = sample_trajectories(model, tokens, commands, 4, scale=3.0, steps=5, generator=torch.Generator().manual_seed(0))
    assert a.shape == (2, 4, 3, 2) and torch.isfinite(a).all()
    # the last block alone, Euler by hand with the other blocks holding anything
    noise = torch.randn(8, 3, 2, generator=torch.Generator().manual_seed(0))
    x = noise.clone()
    toks, cmds = tokens.repeat_interleave(4, 0), commands.repeat_interleave(4, 0)
    junk = torch.randn(8, 2, 3, 2)
    with torch.no_grad():
        for s in range(5):
            t = torch.full((8,), s / 5)
            actions = torch.cat([junk, x[:, None]], 1)
            times = torch.cat([torch.rand(8, 2), t[:, None]], 1)
            x = x + 0.2 * model(toks, actions, cmds, times)[:, -1]
    torch.testing.assert_close(a, (x * 3.0).reshape(2, 4, 3, 2), rtol=1e-5, atol=1e-5)
    assert not math.isclose(float(a[0, 0, 0, 0]), float(a[0, 1, 0, 0]))  # each sample its own noise
