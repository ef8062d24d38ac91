"""VaViM and VaVAM's joint model from their definitions: the joint forward leaves the video model's
computation unchanged, the GPT is causal over frames, an action block sees only its own block and the
frames up to its own, the output head is the token embedding, the time embedding is the formula."""

from __future__ import annotations

import math

import pytest
import torch

from rankopt.world.models import ActionExpert, JointModel, VideoGPT, time_embedding

FRAMES, H, W, HORIZON = 3, 2, 3, 4


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    gpt = VideoGPT(vocab=17, frames=FRAMES, per_frame=H * W, dim=32, layers=2, head_dim=8)
    return JointModel(gpt, ActionExpert(gpt, dim=16, horizon=HORIZON)).eval()


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 17, (2, FRAMES, H, W), generator=g)
    actions = torch.randn(2, FRAMES, HORIZON, 2, generator=g)
    command = torch.randint(0, 3, (2, FRAMES), generator=g)
    t = torch.rand(2, FRAMES, generator=g)
    return tokens, actions, command, t


def test_the_joint_forward_computes_the_video_model_unchanged(model):
    tokens, actions, command, t = _inputs()
    with torch.no_grad():
        velocity, logits = model(tokens, actions, command, t, return_logits=True)
        alone = model.gpt(tokens)
    assert velocity.shape == actions.shape and logits.shape == (2, FRAMES * H * W, 17)
    torch.testing.assert_close(logits, alone, rtol=1e-5, atol=1e-5)
    assert model.gpt.logits(torch.zeros(1, 1, 32)).shape == (1, 1, 17)
    assert model.gpt.wie.weight.data_ptr() == model.gpt.wie.weight.data_ptr()  # one matrix in and out


def test_the_video_model_is_causal(model):
    tokens, *_ = _inputs()
    changed = tokens.clone()
    changed[:, 1, 1, 2] = (changed[:, 1, 1, 2] + 1) % 17  # token index 1·6 + 1·3 + 2 = 11
    with torch.no_grad():
        a, b = model.gpt(tokens), model.gpt(changed)
    torch.testing.assert_close(a[:, :11], b[:, :11])
    assert not torch.allclose(a[:, 11:], b[:, 11:])


def test_an_action_block_sees_its_own_block_and_the_frames_up_to_its_own(model):
    tokens, actions, command, t = _inputs()
    with torch.no_grad():
        base = model(tokens, actions, command, t)
        later_frame = tokens.clone()
        later_frame[:, 2] = (later_frame[:, 2] + 5) % 17  # frame 3 changes
        v = model(later_frame, actions, command, t)
        torch.testing.assert_close(v[:, :2], base[:, :2])  # blocks 1 and 2 do not see frame 3
        assert not torch.allclose(v[:, 2], base[:, 2])
        other_block = actions.clone()
        other_block[:, 0] += 1.0  # block 1's noisy waypoints change
        v = model(tokens, other_block, command, t)
        torch.testing.assert_close(v[:, 1:], base[:, 1:])  # other blocks never see them
        assert not torch.allclose(v[:, 0], base[:, 0])
        first_frame = tokens.clone()
        first_frame[:, 0] = (first_frame[:, 0] + 3) % 17
        v = model(first_frame, actions, command, t)
        assert all(not torch.allclose(v[:, k], base[:, k]) for k in range(FRAMES))  # every block sees frame 1


def test_time_embedding_is_the_sinusoid():
    t = torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64)
    e = time_embedding(t, 8)
    for i, ti in enumerate(t.tolist()):
        freqs = [math.exp(-k * math.log(10_000.0) / 3) for k in range(4)]
        expected = [math.sin(ti * f) for f in freqs] + [math.cos(ti * f) for f in freqs]
        assert e[i].tolist() == pytest.approx(expected, abs=1e-6)  # frequencies in float32, as the authors


def test_shapes_are_checked(model):
    tokens, actions, command, t = _inputs()
    with pytest.raises(ValueError, match="tokens of 3 frames of 2 × 2; the model reads up to 3 frames of 6"):
        model.gpt(tokens[:, :, :, :2])
    with pytest.raises(ValueError, match="tokens of 4 frames of 2 × 3"):
        model.gpt(torch.cat([tokens, tokens[:, :1]], 1))
    with pytest.raises(ValueError, match="5 waypoints per block; the action expert predicts 4"):
        model(tokens, torch.zeros(2, FRAMES, 5, 2), command, t)


def test_generated_frame_is_the_greedy_chain_of_next_tokens(model):
    from rankopt.world.models import generate_frame

    tokens, *_ = _inputs()
    context = tokens[:, :2]
    frame = generate_frame(model.gpt, context, temperature=0)
    assert frame.shape == (2, H, W)
    # by hand: each token is the argmax given the context and the tokens generated before it (the GPT is
    # causal, so what fills the rest of the frame does not matter)
    seq = torch.cat([context.reshape(2, -1), torch.zeros(2, H * W, dtype=torch.long)], 1)
    with torch.no_grad():
        for i in range(H * W):
            pos = 2 * H * W + i
            seq[:, pos] = model.gpt(seq.reshape(2, FRAMES, H, W))[:, pos - 1].argmax(-1)
    assert torch.equal(frame.reshape(2, -1), seq[:, 2 * H * W :])
