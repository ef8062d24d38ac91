"""rankopt.ssl's components against their definitions (loops, hand computations) and against ports of
the authors' code (tests/ssl/franca_reference.py)."""

from __future__ import annotations

import math

import franca_reference as ref
import numpy as np
import pytest
import torch

from rankopt.ssl.crops import MultiCrop, crop_boxes
from rankopt.ssl.heads import DINOHead, NestedHeads, nested_widths
from rankopt.ssl.losses import Centering, dino_cross_entropy, ibot_patch_loss, koleo, sinkhorn_knopp
from rankopt.ssl.masking import batch_masks, block_mask, patch_mask
from rankopt.ssl.rasa import apply_rasa, decompose, fit_rasa, patch_coordinates, position_r2
from rankopt.ssl.schedules import cosine


# --- Sinkhorn-Knopp --------------------------------------------------------------------------------
def sinkhorn_loop(logits, temp, iterations):
    """The definition, element by element: alternately scale each prototype's row of Q = exp(t/τ)ᵀ to
    1/K and each sample's column to 1/N; finally ×N."""
    k, n = logits.shape[1], logits.shape[0]
    q = [[math.exp(float(logits[j, i]) / temp) for j in range(n)] for i in range(k)]
    for _ in range(iterations):
        for i in range(k):
            s = sum(q[i])
            q[i] = [v / s / k for v in q[i]]
        for j in range(n):
            s = sum(q[i][j] for i in range(k))
            for i in range(k):
                q[i][j] = q[i][j] / s / n
    return torch.tensor([[q[i][j] * n for i in range(k)] for j in range(n)], dtype=torch.float64)


def test_sinkhorn_equals_its_loop_and_the_authors_code():
    logits = torch.randn(7, 5, generator=torch.Generator().manual_seed(0))
    ours = sinkhorn_knopp(logits, 0.5, iterations=3)
    assert torch.allclose(ours.double(), sinkhorn_loop(logits, 0.5, 3), atol=1e-6)
    assert torch.allclose(ours, ref.sinkhorn_dino(logits, 0.5, 3), atol=1e-6)
    assert torch.allclose(ours, ref.sinkhorn_ibot(logits, 0.5, 7, 3), atol=1e-6)  # the iBOT variant: the same


def test_sinkhorn_marginals():
    """Every sample's target sums to 1 (exactly, after the last column step); with enough iterations every
    prototype receives N/K of the mass; large logits do not overflow (the max is taken out first)."""
    logits = torch.randn(40, 8, generator=torch.Generator().manual_seed(1))
    q = sinkhorn_knopp(logits, 0.5, iterations=200)
    assert torch.allclose(q.sum(1), torch.ones(40), atol=1e-5)
    assert torch.allclose(q.sum(0), torch.full((8,), 40 / 8), rtol=1e-4)
    extreme = sinkhorn_knopp(300 * logits, 0.04)  # exp(7500) in the authors' form: finite here
    assert torch.isfinite(extreme).all() and torch.allclose(extreme.sum(1), torch.ones(40), atol=1e-5)
    with pytest.raises(ValueError, match="teacher temperature=0"):
        sinkhorn_knopp(logits, 0.0)


def test_centering_targets_and_update():
    c = Centering(3, momentum=0.9)
    c.center.copy_(torch.tensor([[0.5, -1.0, 0.0]]))
    t = torch.tensor([[1.0, 2.0, 3.0], [3.0, 0.0, 1.0]])
    expected = torch.softmax((t - torch.tensor([0.5, -1.0, 0.0])) / 0.1, dim=-1)
    assert torch.allclose(c.targets(t, 0.1), expected)
    c.update(t)
    assert torch.allclose(c.center, torch.tensor([[0.9 * 0.5 + 0.1 * 2.0, 0.9 * -1.0 + 0.1 * 1.0, 0.1 * 2.0]]))


# --- losses ----------------------------------------------------------------------------------------
def test_dino_cross_entropy_by_hand():
    s = torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0]])
    q = torch.tensor([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    tau = 0.5
    rows = []
    for i in range(2):
        z = [math.exp(float(v) / tau) for v in s[i]]
        rows.append(-sum(float(q[i, k]) * math.log(z[k] / sum(z)) for k in range(3)))
    assert float(dino_cross_entropy(s, q, tau)) == pytest.approx(sum(rows) / 2, rel=1e-6)


def test_ibot_loss_by_hand_and_as_the_authors_compute_it():
    g = torch.Generator().manual_seed(2)
    masks = torch.tensor([[True, False, True, True], [False, False, False, False], [False, True, False, False]])
    s = torch.randn(int(masks.sum()), 6, generator=g)
    t = torch.softmax(torch.randn(int(masks.sum()), 6, generator=g), dim=-1)
    image_of_patch = masks.nonzero()[:, 0]
    ours = ibot_patch_loss(s, t, image_of_patch, 3, 0.1)
    per_patch = -(t * torch.log_softmax(s / 0.1, dim=-1)).sum(-1)
    by_hand = (per_patch[:3].mean() + 0 + per_patch[3:].mean()) / 3  # image 2 has no masked patch: 0
    assert float(ours) == pytest.approx(float(by_hand), rel=1e-6)
    assert float(ours) == pytest.approx(float(ref.ibot_loss(s, t, masks, 0.1)), rel=1e-6)


def test_koleo_equals_its_definition_and_the_authors_code():
    x = torch.randn(9, 5, generator=torch.Generator().manual_seed(3))
    z = torch.nn.functional.normalize(x, dim=-1)
    total = 0.0
    for i in range(9):
        nearest = min((j for j in range(9) if j != i), key=lambda j: float((z[i] - z[j]).norm()))
        total += -math.log(float((z[i] - z[nearest] + 1e-8).norm()) + 1e-8)
    assert float(koleo(x)) == pytest.approx(total / 9, rel=1e-5)
    assert float(koleo(x)) == pytest.approx(float(ref.koleo_loss(x)), rel=1e-6)
    with pytest.raises(ValueError, match="at least 2 rows"):
        koleo(x[:1])


# --- heads -----------------------------------------------------------------------------------------
def test_nested_projection_heads_equal_the_released_head():
    dim, prototypes = 64, 256
    ours = NestedHeads(
        dim, prototypes, hidden=32, bottleneck=16, layers=3, levels=5, variant="projection", normalize=False
    )  # the released head, exactly
    theirs = ref.MRLDINOHead(
        dim, prototypes, nlayers=3, hidden_dim=32, bottleneck_dim=16, nesting_list=nested_widths(dim, 5)
    )
    with torch.no_grad():
        for k in range(5):
            theirs.matryoshka_projections[k].load_state_dict(ours.projections[k].state_dict())
            for a, b in zip(theirs.mlps[k], ours.mlps[k]):
                if isinstance(a, torch.nn.Linear):
                    a.load_state_dict(b.state_dict())
            theirs.last_layers[k].weight_v.copy_(ours.last[k].v)
            theirs.last_layers[k].weight_g.copy_(ours.last[k].g)
    x = torch.randn(5, dim, generator=torch.Generator().manual_seed(4))
    for a, b in zip(ours(x), theirs(x)):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-6)
    assert ours.prototypes == [16, 32, 64, 128, 256]  # proportional to the width


def test_slice_heads_read_exactly_their_first_dimensions():
    """The smallest level's loss has no gradient beyond its d_k = D/16 embedding dimensions."""
    heads = NestedHeads(64, 128, hidden=16, bottleneck=8, levels=5, variant="slice")
    x = torch.randn(6, 64, requires_grad=True)
    smallest = heads(x)[0]
    smallest.pow(2).sum().backward()
    assert x.grad[:, 4:].abs().max() == 0 and x.grad[:, :4].abs().max() > 0
    x.grad = None
    heads(x)[-1].pow(2).sum().backward()
    assert (x.grad.abs().sum(0) > 0).all()  # the full level reads every dimension


def test_head_configuration_errors():
    with pytest.raises(ValueError, match="not divisible by 16"):
        nested_widths(40, 5)
    with pytest.raises(ValueError, match="leave level 4 with none"):
        NestedHeads(64, 8, levels=5)
    assert DINOHead(64, 32, hidden=16, bottleneck=8)(torch.randn(3, 64))[0].shape == (3, 32)


# --- masks -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["block", "cyclic_block", "cyclic"])
def test_masks_have_exactly_n_patches(kind):
    rng = np.random.default_rng(5)
    for n in range(0, 50, 3):
        assert int(patch_mask(kind, (7, 7), n, rng).sum()) == min(n, 49)


def test_cyclic_block_is_a_roll_of_the_block_mask():
    """CyclicMask draws the block exactly as block masking does, then rolls it by a random 2-D offset."""
    for seed in range(20):
        rolled = block_mask((7, 7), 11, np.random.default_rng(seed), roll=True)
        rng = np.random.default_rng(seed)
        plain = block_mask((7, 7), 11, rng)
        shift = (int(rng.integers(0, 7)), int(rng.integers(0, 7)))
        assert np.array_equal(rolled, np.roll(plain, shift, axis=(0, 1)))


def test_franca_cyclic_mask_is_the_complement_of_a_rolled_block():
    for seed in range(10):
        mask = patch_mask("cyclic", (7, 7), 30, np.random.default_rng(seed))
        kept = ~mask
        assert int(kept.sum()) == 19
        rows, cols = np.nonzero(kept)
        # a rolled rectangle: unrolled by its first kept cell it is one contiguous block (after trimming)
        assert len(set(rows.tolist())) * len(set(cols.tolist())) >= 19


def test_batch_masks_probability_and_ratios():
    rng = np.random.default_rng(6)
    masks = batch_masks("cyclic_block", 40, (7, 7), (0.1, 0.5), 0.5, rng)
    counts = masks.sum(1)
    assert masks.shape == (40, 49) and int((counts > 0).sum()) == 20
    assert counts[counts > 0].min() >= int(0.1 * 49) and counts.max() <= int(0.5 * 49)
    assert not batch_masks("none", 8, (7, 7), (0.1, 0.5), 0.5, rng).any()


# --- schedules, crops --------------------------------------------------------------------------------
def test_cosine_schedule_values():
    # warm-up: linear from start to base
    assert cosine(5, 100, base=1.0, final=0.2, warmup=10, start=0.0) == pytest.approx(0.5)
    # after the warm-up: final + ½(base − final)(1 + cos(π t/T)), t counted from the warm-up's end
    t, span = 30, 90
    assert cosine(40, 100, base=1.0, final=0.2, warmup=10) == pytest.approx(
        0.2 + 0.4 * (1 + math.cos(math.pi * t / span))
    )
    assert cosine(100, 100, base=1.0, final=0.2, warmup=10) == pytest.approx(0.2)
    assert cosine(0, 50, base=0.994, final=1.0) == pytest.approx(0.994)
    # the teacher temperature: warm-up then constant
    assert cosine(3, 100, base=0.07, final=0.07, warmup=6, start=0.04) == pytest.approx(0.055)
    assert cosine(60, 100, base=0.07, final=0.07, warmup=6, start=0.04) == pytest.approx(0.07)


def test_crops_are_inside_the_image_with_their_scale():
    boxes = crop_boxes(1000, (0.05, 0.32), torch.Generator().manual_seed(7))
    cx, cy, w, h = boxes.T
    assert ((cx - w / 2) >= -1 - 1e-6).all() and ((cx + w / 2) <= 1 + 1e-6).all()
    assert ((cy - h / 2) >= -1 - 1e-6).all() and ((cy + h / 2) <= 1 + 1e-6).all()
    area = w * h / 4
    assert area.min() >= 0.05 - 1e-6 and area.max() <= 0.32 + 1e-6


def test_a_whole_image_crop_without_jitter_is_the_image_and_sizes_are_checked():
    images = torch.rand(3, 1, 28, 28)
    crops = MultiCrop(28, n_local=0, global_scale=(1.0, 1.0), ratio=(1.0, 1.0), jitter=0.0, solarize=0.0)
    g = torch.Generator().manual_seed(8)
    first = crops(images, g)[0]
    for i in range(3):  # a full-area box is the whole image, flipped or not
        assert torch.allclose(first[i], images[i], atol=1e-5) or torch.allclose(first[i], images[i].flip(-1), atol=1e-5)
    with pytest.raises(ValueError, match="larger than the 28 px images"):
        MultiCrop(28, n_local=2, local_size=40)
    with pytest.raises(ValueError, match="multi-crop expects 28"):
        crops(torch.rand(2, 1, 32, 32), g)


# --- RASA ------------------------------------------------------------------------------------------
def test_rasa_removes_linear_position_information_on_a_constructed_case():
    """Patch features = semantics + A·(row, column): before, position is read perfectly; after one RASA
    iteration the probe reads nothing, and the semantic part orthogonal to the plane is untouched."""
    g = torch.Generator().manual_seed(9)
    n, grid, d = 60, (5, 5), 12
    coords = patch_coordinates(grid).float()  # (25, 2)
    a = torch.randn(2, d, generator=g)
    plane = torch.linalg.qr(a.T)[0]  # (d, 2): orthonormal basis of the position plane
    semantic = torch.randn(n, 1, d, generator=g)
    semantic = (semantic - semantic @ plane @ plane.T).expand(n, 25, d)  # one vector per image, off the plane
    feats = semantic + (coords @ a).unsqueeze(0)
    train, test = feats[:40], feats[40:]
    assert position_r2(train, test, grid) > 0.999
    directions = fit_rasa(train, grid, iterations=1)
    after_train, after_test = apply_rasa(train, directions), apply_rasa(test, directions)
    assert abs(position_r2(after_train, after_test, grid)) < 1e-6
    residual = feats.double() - feats.double() @ plane.double() @ plane.double().T
    assert torch.allclose(apply_rasa(feats, directions).double(), residual, atol=1e-4)


def test_rasa_decomposition_is_gram_schmidt():
    w = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    pos, rest = decompose(torch.tensor([[2.0, 3.0, 4.0]]), w)
    assert torch.allclose(pos, torch.tensor([[2.0, 3.0, 0.0]])) and torch.allclose(
        rest, torch.tensor([[0.0, 0.0, 4.0]])
    )
