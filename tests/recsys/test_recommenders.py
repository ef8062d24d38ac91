"""LightGCN propagation against a dense computation; Recall/NDCG@K against the LightGCN formulas."""

import math

import numpy as np
import torch

from rankopt.recsys import Interactions, LightGCN, evaluate_recommender, normalized_adjacency


def tiny(seed=0, n_users=6, n_items=9, n=20):
    rng = np.random.default_rng(seed)
    return Interactions(rng.integers(0, n_users, n), rng.integers(0, n_items, n)), n_users, n_items


def test_lightgcn_equals_dense_propagation():
    train, nu, ni = tiny()
    adj = normalized_adjacency(train, nu, ni)
    model = LightGCN(nu, ni, adj, dim=4, layers=3)
    a = torch.zeros(nu + ni, nu + ni)
    for u, i in zip(train.user, train.item):
        a[u, nu + i] = a[nu + i, u] = 1.0
    d = a.sum(1)
    inv = torch.where(d > 0, d.rsqrt(), torch.zeros_like(d))
    norm = inv[:, None] * a * inv[None, :]
    e0 = torch.cat([model.user.weight, model.item.weight]).detach()
    want = sum(torch.linalg.matrix_power(norm, k) @ e0 for k in range(4)) / 4
    users, items = model.embeddings()
    torch.testing.assert_close(torch.cat([users, items]).detach(), want, atol=1e-5, rtol=1e-5)


def lightgcn_reference(scores, test_items, train_items, k):
    """Recall@K and NDCG@K as LightGCN-PyTorch computes them, for one user."""
    s = scores.clone()
    s[list(train_items - test_items)] = -float("inf")
    top = torch.topk(s, k).indices.tolist()
    hits = [1.0 if i in test_items else 0.0 for i in top]
    recall = sum(hits) / len(test_items)
    dcg = sum(h / math.log2(p + 2) for p, h in enumerate(hits))
    idcg = sum(1 / math.log2(p + 2) for p in range(min(k, len(test_items))))
    return recall, dcg / idcg


def test_metrics_follow_lightgcn_conventions():
    g = torch.Generator().manual_seed(3)
    nu, ni, k = 30, 50, 5
    ue, ie = torch.randn(nu, 8, generator=g), torch.randn(ni, 8, generator=g)
    rng = np.random.default_rng(4)
    train = Interactions(rng.integers(0, nu, 300), rng.integers(0, ni, 300))
    test = Interactions(rng.integers(0, nu, 80), rng.integers(0, ni, 80))
    got = evaluate_recommender(ue, ie, test, train, ks=(k,), chunk=7)
    recalls, ndcgs = [], []
    for u in np.unique(test.user):
        r, n = lightgcn_reference(ue[u] @ ie.T, set(test.item[test.user == u].tolist()), set(train.item[train.user == u].tolist()), k)
        recalls.append(r)
        ndcgs.append(n)
    assert abs(got[f"recall@{k}"] - np.mean(recalls)) < 1e-9
    assert abs(got[f"ndcg@{k}"] - np.mean(ndcgs)) < 1e-9
    assert got["n_users"] == len(np.unique(test.user))


def test_bpr_training_on_ml100k_improves_ndcg():
    from pathlib import Path

    import pytest

    from rankopt.recsys import load_directory
    from rankopt.recsys.training import train_bpr

    shared = Path(__file__).resolve().parents[3] / "shared" / "data" / "recsys" / "ml-100k"
    if not shared.is_dir():
        pytest.skip("shared recsys data not present")
    data = load_directory(shared, rating_threshold=4)
    torch.manual_seed(0)
    model = LightGCN(data.n_users, data.n_items, normalized_adjacency(data.train, data.n_users, data.n_items), dim=32, layers=2)
    with torch.no_grad():
        before = evaluate_recommender(*model.embeddings(), data.valid, data.train)["ndcg@20"]
    losses = train_bpr(model, data.train, data.n_items, epochs=3, batch_size=2048, lr=5e-3)
    with torch.no_grad():
        after = evaluate_recommender(*model.embeddings(), data.valid, data.train)["ndcg@20"]
    assert losses[-1] < losses[0] and after > before + 0.02


def test_uniform_negatives_are_never_positives():
    from rankopt.recsys.training import _interaction_keys, uniform_negatives

    train, nu, ni = tiny(seed=5, n=40)
    keys = _interaction_keys(train, ni)
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(nu), 50)
    neg = uniform_negatives(keys, ni, users, rng)
    seen = set(zip(train.user.tolist(), train.item.tolist()))
    assert not any((int(u), int(i)) in seen for u, i in zip(users, neg))


def test_ngcf_layer_equals_dense_formula():
    from rankopt.recsys import NGCF

    train, nu, ni = tiny(seed=2)
    adj = normalized_adjacency(train, nu, ni)
    model = NGCF(nu, ni, adj, dim=4, layers=2)
    dense = adj.to_dense()
    x = torch.cat([model.user.weight, model.item.weight])
    outs = [x]
    for w1, w2 in zip(model.w1, model.w2):
        side = dense @ x
        x = torch.nn.functional.leaky_relu(w1(side + x) + w2(side * x), 0.2)
        outs.append(torch.nn.functional.normalize(x, dim=1))
    want = torch.cat(outs, dim=1)
    users, items = model.embeddings()
    torch.testing.assert_close(torch.cat([users, items]), want, atol=1e-5, rtol=1e-5)
