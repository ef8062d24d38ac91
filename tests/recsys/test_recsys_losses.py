"""ITEM loss against its formula written plainly; PPR against a dense power iteration; kernel reuse."""

import math

import numpy as np
import pytest
import torch

from rankopt.losses import SupNDCG
from rankopt.recsys import Interactions, normalized_adjacency
from rankopt.recsys.losses import CandidateRankLoss, ITEMLoss, SampledSoftmaxLoss
from rankopt.recsys.negatives import personalized_pagerank, ppr_negatives


def block(seed=0, b=5, c=8, n_items=20, d=6):
    g = torch.Generator().manual_seed(seed)
    users = torch.randn(b, d, dtype=torch.float64, generator=g)
    items = torch.randn(n_items, d, dtype=torch.float64, generator=g)
    cand = torch.stack([torch.randperm(n_items, generator=g)[:c] for _ in range(b)])
    pos = torch.zeros(b, c, dtype=torch.bool)
    pos[:, :3] = True
    pos[0, 3] = True
    return users, items, cand, pos


def item_reference(users, items, cand, pos, tau, k=None, k_temperature=0.1):
    u = torch.nn.functional.normalize(users, dim=1)
    it = torch.nn.functional.normalize(items, dim=1)
    losses = []
    for b in range(len(u)):
        s = it[cand[b]] @ u[b]
        p_idx = pos[b].nonzero().flatten().tolist()
        dcg = 0.0
        for p in p_idx:
            rank = 1 + sum(torch.sigmoid((s[j] - s[p]) / tau) for j in range(len(s)) if j != p)
            in_top_k = 1.0 if k is None else torch.sigmoid((k + 0.5 - rank) / k_temperature)
            dcg = dcg + in_top_k / torch.log2(1 + rank)
        depth = len(p_idx) if k is None else min(k, len(p_idx))
        idcg = sum(1 / math.log2(1 + r) for r in range(1, depth + 1))
        losses.append(1 - dcg / idcg)
    return torch.stack(losses).mean()


def test_item_loss_value_and_gradient():
    users, items, cand, pos = block()
    for tau, k in [(0.01, None), (0.5, None), (0.1, 2), (0.5, 3)]:
        u1, u2 = users.clone().requires_grad_(), users.clone().requires_grad_()
        ours = ITEMLoss(tau=tau, k=k)(u1, items, cand, pos)
        ref = item_reference(u2, items, cand, pos, tau, k)
        ours.backward()
        ref.backward()
        assert abs(float(ours) - float(ref)) < 1e-9
        torch.testing.assert_close(u1.grad, u2.grad)


def _exact_ndcg_at_k(scores, relevant, k):
    """NDCG@k from its definition: sort, cut at k, binary gains."""
    order = sorted(range(len(scores)), key=lambda j: -scores[j])[:k]
    dcg = sum(1 / math.log2(2 + p) for p, j in enumerate(order) if relevant[j])
    idcg = sum(1 / math.log2(2 + p) for p in range(min(k, sum(relevant))))
    return dcg / idcg


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_item_loss_at_k_tends_to_one_minus_ndcg_at_k(k):
    """Distinct scores, τ and T small: the surrogate is NDCG@k itself (it used to cut only the ideal DCG
    at k, so its "NDCG" exceeded 1 whenever a positive ranked below k)."""
    g = torch.Generator().manual_seed(k)
    users, items = torch.randn(6, 8, generator=g), torch.randn(30, 8, generator=g)
    cand = torch.stack([torch.randperm(30, generator=g)[:12] for _ in range(6)])
    pos = torch.zeros(6, 12, dtype=torch.bool)
    pos[:, :4] = True
    loss = ITEMLoss(tau=1e-4, k=k, k_temperature=1e-3)(users, items, cand, pos)
    u = torch.nn.functional.normalize(users, dim=1)
    it = torch.nn.functional.normalize(items, dim=1)
    expected = sum(_exact_ndcg_at_k((it[cand[b]] @ u[b]).tolist(), pos[b].tolist(), k) for b in range(6)) / 6
    assert abs((1 - float(loss)) - expected) < 1e-6


def test_item_loss_at_k_never_exceeds_one():
    g = torch.Generator().manual_seed(0)
    for tau in (0.01, 0.1, 1.0):
        users, items = torch.randn(16, 8, generator=g), torch.randn(50, 8, generator=g)
        cand = torch.randint(0, 50, (16, 20), generator=g)
        pos = torch.rand(16, 20, generator=g) < 0.4
        for k in (1, 3, 10):
            assert float(ITEMLoss(tau=tau, k=k, k_temperature=1.0)(users, items, cand, pos)) >= -1e-6


def test_rankopt_losses_run_on_candidate_blocks():
    users, items, cand, pos = block(1)
    value = CandidateRankLoss(SupNDCG())(users.requires_grad_(), items, cand, pos)
    value.backward()
    assert torch.isfinite(value) and users.grad.abs().sum() > 0


def test_sampled_softmax_against_direct_formula():
    users, items, cand, pos = block(2)
    levels = pos.to(torch.int64).clone()
    levels[0, -1] = -1  # padding is neither positive nor negative
    tau = 0.2
    got = SampledSoftmaxLoss(tau=tau)(users, items, cand, levels)
    u = torch.nn.functional.normalize(users, dim=1)
    it = torch.nn.functional.normalize(items, dim=1)
    terms = []
    for b in range(len(users)):
        s = it[cand[b]] @ u[b] / tau
        negs = s[levels[b] == 0]
        for p in s[levels[b] == 1]:
            terms.append(-(p - torch.logsumexp(torch.cat([p[None], negs]), 0)))
    assert abs(float(got) - float(torch.stack(terms).mean())) < 1e-6


def test_ppr_negatives_are_cached(tmp_path, monkeypatch):
    import rankopt.recsys.negatives as negatives

    rng = np.random.default_rng(1)
    train = Interactions(rng.integers(0, 6, 25), rng.integers(0, 15, 25))
    first = ppr_negatives(train, 6, 15, m=4, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("ppr-*.npz"))) == 1
    monkeypatch.setattr(
        negatives, "personalized_pagerank", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed"))
    )
    np.testing.assert_array_equal(ppr_negatives(train, 6, 15, m=4, cache_dir=tmp_path), first)
    items, scores = ppr_negatives(train, 6, 15, m=4, cache_dir=tmp_path, with_scores=True)  # the scores are cached too
    np.testing.assert_array_equal(items, first)
    assert scores.shape == items.shape and (np.diff(scores, axis=1) <= 0).all()  # highest PPR first
    with pytest.raises(AssertionError, match="recomputed"):  # other parameters: another cache entry
        ppr_negatives(train, 6, 15, m=4, restart=0.3, cache_dir=tmp_path)


def test_candidate_sampler_blocks():
    from rankopt.recsys.training import CandidateSampler

    rng = np.random.default_rng(0)
    train = Interactions(rng.integers(0, 20, 150), rng.integers(0, 40, 150))
    ppr = ppr_negatives(train, 20, 40, m=8)
    sampler = CandidateSampler(train, 40, n_pos=5, n_neg=6, ppr=ppr, ppr_mix=0.5)
    seen_users = []
    positives = {u: set(train.item[train.user == u].tolist()) for u in range(20)}
    for users, cand, levels in sampler.epoch(rng, batch_users=7):
        assert cand.shape == (len(users), 11) and levels.shape == cand.shape
        seen_users += users.tolist()
        for u, c, lv in zip(users.tolist(), cand, levels):
            pos = c[lv == 1].tolist()
            assert len(pos) == min(5, len(positives[u])) and len(set(pos)) == len(pos) and set(pos) <= positives[u]
            assert not set(c[lv == 0].tolist()) & positives[u]
            assert set(c[5:8].tolist()) <= set(ppr[u].tolist())  # the PPR share comes first
    assert sorted(seen_users) == sorted(set(train.user.tolist()))  # every training user once per epoch


def test_ppr_matches_dense_power_iteration_and_excludes_positives():
    rng = np.random.default_rng(0)
    nu, ni = 7, 12
    train = Interactions(rng.integers(0, nu, 30), rng.integers(0, ni, 30))
    adj = normalized_adjacency(train, nu, ni)
    dense = adj.to_dense()
    sources = torch.tensor([0, 3])
    x = torch.zeros(nu + ni, 2)
    x[sources, torch.arange(2)] = 1
    e = x.clone()
    for _ in range(20):
        x = 0.15 * e + 0.85 * dense @ x
    torch.testing.assert_close(personalized_pagerank(adj, sources), x)
    neg = ppr_negatives(train, nu, ni, m=3, block=3)
    for u in range(nu):
        assert not set(neg[u].tolist()) & set(train.item[train.user == u].tolist())


def test_ppr_band_skips_the_top():
    rng = np.random.default_rng(3)
    train = Interactions(rng.integers(0, 8, 40), rng.integers(0, 30, 40))
    full = ppr_negatives(train, 8, 30, m=9)
    np.testing.assert_array_equal(ppr_negatives(train, 8, 30, m=5, skip=4), full[:, 4:])
    with pytest.raises(ValueError, match="skip"):
        ppr_negatives(train, 8, 30, m=25, skip=10)


def test_ppr_negatives_on_a_disconnected_graph_never_return_positives():
    """User 0 reaches only its own two items; every other item has PPR 0 for it, so the positives must
    sort below a zero score, not tie with it."""
    users = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    items = np.arange(10)  # user u ≥ 1 holds items 2u, 2u + 1: five components
    train = Interactions(users, items)
    neg = ppr_negatives(train, 5, 10, m=8, block=5)
    assert set(neg[0].tolist()) == set(range(2, 10))


def test_masked_items_rank_below_every_real_item():
    """Four of six items masked; the test item is the lowest-scored real item: it is still in the top 2
    of the two items left (recall@2 = 1), not tied with the masked ones."""
    from rankopt.recsys.evaluation import evaluate_recommender

    users = torch.tensor([[1.0, 0.0]])
    items = torch.tensor([[3.0, 0], [2.5, 0], [2.0, 0], [1.5, 0], [1.0, 0], [-1.0, 0]])
    train = Interactions(np.zeros(4, dtype=np.int64), np.array([0, 1, 2, 3]))
    test = Interactions(np.zeros(1, dtype=np.int64), np.array([5]))
    out = evaluate_recommender((users, items), test, train, ("recall@2", "ndcg@2"))
    assert out["recall@2"] == 1.0 and out["ndcg@2"] == pytest.approx(1 / math.log2(3))


def test_cosine_contrastive_loss_against_simplex_formula():
    from rankopt.recsys.losses import CosineContrastiveLoss

    users, items, cand, pos = block(3)
    levels = pos.to(torch.int64).clone()
    levels[1, -1] = -1  # padding is neither positive nor negative
    margin, w = 0.3, 7.0
    got = CosineContrastiveLoss(margin=margin, neg_weight=w)(users, items, cand, levels)
    u = torch.nn.functional.normalize(users, dim=1)
    it = torch.nn.functional.normalize(items, dim=1)
    terms = []  # SimpleX: per (user, positive) pair, (1 − cos) + w · mean over the negatives of max(0, cos − m)
    for b in range(len(users)):
        cos = [float(it[j] @ u[b]) for j in cand[b]]
        negs = [max(0.0, c - margin) for c, lv in zip(cos, levels[b]) if lv == 0]
        terms += [(1 - c) + w * sum(negs) / len(negs) for c, lv in zip(cos, levels[b]) if lv == 1]
    assert float(got) == pytest.approx(sum(terms) / len(terms), abs=1e-9)
    with pytest.raises(ValueError, match="margin=1.5"):
        CosineContrastiveLoss(margin=1.5)


def catalogue_block(seed=4, b=4, n_items=15, d=5):
    """Users, items and whole-catalogue levels: 1 sampled positive, −1 another known item, 0 the rest."""
    g = torch.Generator().manual_seed(seed)
    users = torch.randn(b, d, dtype=torch.float64, generator=g)
    items = torch.randn(n_items, d, dtype=torch.float64, generator=g)
    levels = torch.zeros(b, n_items, dtype=torch.int64)
    for r in range(b):
        perm = torch.randperm(n_items, generator=g)
        levels[r, perm[: 2 + r % 2]] = 1
        levels[r, perm[3:5]] = -1
    return users, items, levels


@pytest.mark.parametrize("normalize", [True, False])
def test_item_loss_over_the_whole_catalogue_ranks_against_every_unknown_item(normalize):
    users, items, levels = catalogue_block()
    tau = 0.3
    u_grad = users.clone().requires_grad_()
    got = ITEMLoss(tau=tau, normalize=normalize)(u_grad, items, None, levels)
    got.backward()
    u = torch.nn.functional.normalize(users, dim=1) if normalize else users
    it = torch.nn.functional.normalize(items, dim=1) if normalize else items
    u_ref = u.clone().requires_grad_() if not normalize else None
    losses = []
    for b in range(len(users)):  # a loop over the catalogue: ignored items neither rank above nor count
        s = it @ (u_ref[b] if u_ref is not None else u[b])
        pos = (levels[b] == 1).nonzero().flatten().tolist()
        others = [j for j in range(len(items)) if levels[b, j] >= 0]
        dcg = sum(
            1 / torch.log2(1 + 1 + sum(torch.sigmoid((s[j] - s[p]) / tau) for j in others if j != p)) for p in pos
        )
        idcg = sum(1 / math.log2(1 + r) for r in range(1, len(pos) + 1))
        losses.append(1 - dcg / idcg)
    expected = torch.stack(losses).mean()
    assert float(got) == pytest.approx(float(expected), abs=1e-10)
    if u_ref is not None:
        expected.backward()
        torch.testing.assert_close(u_grad.grad, u_ref.grad)


def test_whole_catalogue_equals_explicit_candidates_and_checks_its_shape():
    users, items, levels = catalogue_block(5)
    every = torch.arange(len(items)).expand(len(users), -1)
    for loss in (ITEMLoss(tau=0.2), SampledSoftmaxLoss(tau=0.2)):
        assert float(loss(users, items, None, levels)) == pytest.approx(
            float(loss(users, items, every, levels)), abs=1e-12
        )
    with pytest.raises(ValueError, match=r"\(users, items\) = \(4, 15\)"):
        ITEMLoss()(users, items, None, levels[:, :-1])


def test_sampler_over_the_whole_catalogue_marks_known_items_ignored():
    from rankopt.recsys.training import CandidateSampler

    rng = np.random.default_rng(3)
    train = Interactions(rng.integers(0, 12, 90), rng.integers(0, 30, 90))
    sampler = CandidateSampler(train, 30, n_pos=3, n_neg="all")
    positives = {u: set(train.item[train.user == u].tolist()) for u in range(12)}
    seen = []
    for users, cand, levels in sampler.epoch(rng, batch_users=5):
        assert cand is None and levels.shape == (len(users), 30)
        for u, lv in zip(users.tolist(), levels):
            pos, ign = set(np.flatnonzero(lv == 1).tolist()), set(np.flatnonzero(lv == -1).tolist())
            assert len(pos) == min(3, len(positives[u])) and pos <= positives[u]
            assert pos | ign == positives[u] and not pos & ign  # every other known item ignored, never a negative
        seen += users.tolist()
    assert sorted(seen) == sorted(positives)
    with pytest.raises(ValueError, match="nothing to add"):
        CandidateSampler(train, 30, 3, "all", ppr=np.zeros((12, 5), dtype=np.int64))


def test_ppr_negatives_drawn_in_proportion_to_their_score():
    from rankopt.recsys.training import CandidateSampler

    train = Interactions(np.array([0, 1]), np.array([0, 1]))
    pool = np.array([[2, 3, 4, 5], [5, 4, 3, 2]])
    scores = np.array([[0.4, 0.3, 0.2, 0.1], [0.7, 0.2, 0.1, 0.0]], dtype=np.float32)
    sampler = CandidateSampler(train, 6, n_pos=1, n_neg=1, ppr=pool, ppr_mix=1.0, ppr_scores=scores)
    rng = np.random.default_rng(0)
    draws = np.concatenate([sampler._ppr_draw(np.array([0, 1]), rng)[None] for _ in range(20000)])
    for u in range(2):  # one draw per step: the first pick of a Gumbel top-k is categorical in the scores
        freq = np.array([(draws[:, u, 0] == item).mean() for item in pool[u]])
        np.testing.assert_allclose(freq, scores[u] / scores[u].sum(), atol=0.015)
    assert not (draws[:, 1, 0] == 2).any()  # zero PPR: never drawn while a reachable item is left
    two = CandidateSampler(train, 6, 1, 2, ppr=pool, ppr_mix=1.0, ppr_scores=scores)
    picks = np.concatenate([two._ppr_draw(np.array([0]), rng) for _ in range(2000)])
    assert (picks[:, 0] != picks[:, 1]).all()  # without replacement
    # the second pick, given the first, is again proportional among the rest (successive sampling)
    first_two = {(2, 3): 0.4 * 0.3 / 0.6, (3, 2): 0.3 * 0.4 / 0.7}
    for (a, b), p in first_two.items():
        assert ((picks[:, 0] == a) & (picks[:, 1] == b)).mean() == pytest.approx(p, abs=0.03)
