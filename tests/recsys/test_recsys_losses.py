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
    assert len(list(tmp_path.glob("ppr-*.npy"))) == 1
    monkeypatch.setattr(negatives, "personalized_pagerank", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    np.testing.assert_array_equal(ppr_negatives(train, 6, 15, m=4, cache_dir=tmp_path), first)
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
