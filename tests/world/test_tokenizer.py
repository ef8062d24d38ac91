"""The VQ-VAE tokenizer by hand: nearest codes by brute force, the straight-through gradient, the
codebook and commitment losses, dead-code restarts, and encode/decode shapes."""

from __future__ import annotations

import pytest
import torch

from rankopt.world.tokenizer import VQVAE, VectorQuantizer


def _quantizer(codebook) -> VectorQuantizer:
    q = VectorQuantizer(len(codebook), len(codebook[0]), beta=0.25, dead_after=2, data_init=False)
    with torch.no_grad():
        q.codebook.copy_(torch.tensor(codebook, dtype=torch.float32))
    return q


def test_codes_losses_and_the_straight_through_gradient_by_hand():
    q = _quantizer([[0.0, 0.0], [1.0, 1.0], [4.0, 0.0]])
    # two encoder vectors, as a (1, 2, 1, 2) map: (0.9, 0.8) → code 1, (3.0, 0.5) → code 2
    z = torch.tensor([[[[0.9, 3.0]], [[0.8, 0.5]]]], requires_grad=True)
    zq, codes, loss = q(z)
    assert codes.tolist() == [[[1, 2]]]
    torch.testing.assert_close(zq.detach(), torch.tensor([[[[1.0, 4.0]], [[1.0, 0.0]]]]))
    # ‖sg(z) − e‖² and β‖z − sg(e)‖², each a mean over the 4 numbers: squared gaps .01 .04 1 .25
    mse = (0.01 + 0.04 + 1.0 + 0.25) / 4
    assert loss.item() == pytest.approx(mse * 1.25)
    # straight through: d(Σ w·zq)/dz = w exactly (the quantisation passes no gradient of its own)
    z.grad = None
    w = torch.tensor([[[[1.0, -2.0]], [[0.5, 3.0]]]])
    (zq * w).sum().backward()
    torch.testing.assert_close(z.grad, w)
    # the code moves toward z through the codebook term only: d/de of ‖sg(z) − e‖²/4
    q.codebook.grad = None
    _, _, loss = q(z.detach())
    loss.backward()
    torch.testing.assert_close(q.codebook.grad[1], 2 * (torch.tensor([1.0, 1.0]) - torch.tensor([0.9, 0.8])) / 4)
    assert q.codebook.grad[0].abs().sum() == 0  # an unused code gets no gradient


def test_nearest_equals_brute_force():
    g = torch.Generator().manual_seed(0)
    q = VectorQuantizer(17, 5)
    with torch.no_grad():
        q.codebook.copy_(torch.randn(17, 5, generator=g))
    x = torch.randn(300, 5, generator=g)
    brute = torch.tensor([min(range(17), key=lambda k: float(((x[i] - q.codebook[k]) ** 2).sum())) for i in range(300)])
    assert torch.equal(q.nearest(x), brute)


def test_dead_codes_restart_on_encoder_vectors():
    q = _quantizer([[0.0, 0.0], [1.0, 1.0], [50.0, 50.0]])  # code 2 is far from every input
    q.train()
    z = torch.tensor([[[[0.1, 0.9]], [[0.0, 1.2]]]])
    for _ in range(2):
        q(z)
    vectors = {(0.1, 0.0), (0.9, 1.2)}
    restarted = tuple(round(v, 4) for v in q.codebook[2].tolist())
    assert restarted in vectors and q.idle_steps.tolist() == [0, 0, 0]
    q.eval()
    before = q.codebook.detach().clone()
    for _ in range(3):
        q(torch.zeros(1, 2, 1, 1))
    assert torch.equal(q.codebook.detach(), before)  # never in evaluation
    u = q.usage(torch.tensor([0, 0, 1, 1]))
    assert u["codes_used"] == pytest.approx(2 / 3) and u["perplexity"] == pytest.approx(2.0)


def test_the_first_training_batch_initialises_the_codebook_to_distinct_encoder_vectors():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(2, 3, 4, 5, generator=g)  # 40 encoder vectors of dimension 3
    vectors = {tuple(v) for v in z.permute(0, 2, 3, 1).reshape(-1, 3).tolist()}
    q = VectorQuantizer(16, 3)
    q.eval()
    q(z)  # evaluation never initialises
    assert q.needs_init.item() and not any(tuple(c) in vectors for c in q.codebook.tolist())
    q.train()
    _, codes, _ = q(z)
    chosen = [tuple(c) for c in q.codebook.tolist()]
    assert all(c in vectors for c in chosen) and len(set(chosen)) == 16
    assert not q.needs_init.item() and len(codes.unique()) == 16  # every code is some vector's nearest
    after = q.codebook.detach().clone()
    q(z + 1)
    assert torch.equal(q.codebook.detach(), after)  # only once (no code idle for dead_after steps yet)
    state = VectorQuantizer(16, 3).state_dict()
    assert "needs_init" in state  # checkpointed: a resumed run does not initialise again


def test_vqvae_shapes_and_bad_frames():
    m = VQVAE(n_codes=8, dim=4, width=8)
    frames = torch.rand(2, 1, 16, 32)
    recon, codes, loss = m(frames)
    assert recon.shape == frames.shape and codes.shape == (2, 4, 8) and loss.ndim == 0
    assert m.decode(m.encode(frames)).shape == frames.shape
    with pytest.raises(ValueError, match="multiples of 4; got \\(2, 1, 10, 32\\)"):
        m(torch.rand(2, 1, 10, 32))
