"""LightGCN propagation against a dense computation; Recall/NDCG@K against the LightGCN formulas."""

import math

import numpy as np
import pytest
import torch

from rankopt.recsys import Interactions, LightGCN, evaluate_recommender, normalized_adjacency


def tiny(seed=0, n_users=6, n_items=9, n=20):
    rng = np.random.default_rng(seed)
    return Interactions(rng.integers(0, n_users, n), rng.integers(0, n_items, n)), n_users, n_items


def dense_normalized(train, nu, ni, left, right):
    a = torch.zeros(nu + ni, nu + ni, dtype=torch.float64)
    for u, i in zip(train.user, train.item):
        a[u, nu + i] = a[nu + i, u] = 1.0
    d = a.sum(1).clamp_min(1)
    return (d[:, None] ** -left * a * d[None, :] ** -right).float()


def test_lightgcn_equals_dense_propagation():
    train, nu, ni = tiny()
    model = LightGCN(nu, ni, train, dim=4, layers=3)
    norm = dense_normalized(train, nu, ni, 0.5, 0.5)
    e0 = torch.cat([model.user.weight, model.item.weight]).detach()
    want = sum(torch.linalg.matrix_power(norm, k) @ e0 for k in range(4)) / 4
    users, items = model.embeddings()
    torch.testing.assert_close(torch.cat([users, items]).detach(), want, atol=1e-5, rtol=1e-5)


def test_lightgcnpp_equals_dense_formula():
    """LightGCN++: Â = D^-α A D^-β, each layer's input L2-normalised, final = γ E⁰ + (1 − γ) mean(E¹..Eᴷ)."""
    from rankopt.recsys import LightGCNpp

    train, nu, ni = tiny(seed=7)
    alpha, beta, gamma = 0.6, -0.1, 0.2
    model = LightGCNpp(nu, ni, train, dim=4, layers=3, alpha=alpha, beta=beta, gamma=gamma)
    norm = dense_normalized(train, nu, ni, alpha, beta)
    x0 = torch.cat([model.user.weight, model.item.weight]).detach()
    x, layers = x0, []
    for _ in range(3):
        x = norm @ (x / x.norm(dim=1, keepdim=True).clamp_min(1e-12))
        layers.append(x)
    want = gamma * x0 + (1 - gamma) * sum(layers) / 3
    users, items = model.embeddings()
    torch.testing.assert_close(torch.cat([users, items]).detach(), want, atol=1e-5, rtol=1e-5)


def test_item_mean_users_follow_the_graph_they_are_given():
    """user_repr="items": no user parameter; a user's layer 0 is the mean of its items', and set_graph
    with new interactions serves a new user without retraining."""
    train, nu, ni = tiny(seed=1)
    model = LightGCN(nu, ni, train, dim=4, layers=2, user_repr="items")
    assert model.user is None and all("user" not in n for n, _ in model.named_parameters())
    users0, items0 = model.ego()
    for u in range(nu):
        mine = sorted(set(train.item[train.user == u].tolist()))
        want = items0[mine].mean(0) if mine else torch.zeros(4)
        torch.testing.assert_close(users0[u], want)
    newcomer = nu - 1
    seen = Interactions(train.user[train.user != newcomer], train.item[train.user != newcomer])
    model.set_graph(seen)
    assert float(model.ego()[0][newcomer].abs().sum()) == 0.0  # no edge, no representation
    context = Interactions(np.array([newcomer, newcomer]), np.array([0, 1]))
    model.set_graph(Interactions.concat([seen, context]))
    torch.testing.assert_close(model.ego()[0][newcomer], items0[[0, 1]].mean(0))
    assert float(model.embeddings()[0][newcomer].abs().sum()) > 0


def lightgcn_reference(scores, test_items, train_items, k):
    """Recall@K and NDCG@K as LightGCN-PyTorch computes them, for one user."""
    s = scores.clone()
    s[list(train_items - test_items)] = -float("inf")
    top = torch.topk(s, k).indices.tolist()
    hits = [1.0 if i in test_items else 0.0 for i in top]
    recall = sum(hits) / len(test_items)
    dcg = sum(h / math.log2(p + 2) for p, h in enumerate(hits))
    idcg = sum(1 / math.log2(p + 2) for p in range(min(k, len(test_items))))
    return recall, dcg / idcg, sum(hits) / min(k, len(test_items))


def test_metrics_follow_lightgcn_conventions():
    g = torch.Generator().manual_seed(3)
    nu, ni, k = 30, 50, 5
    ue, ie = torch.randn(nu, 8, generator=g), torch.randn(ni, 8, generator=g)
    rng = np.random.default_rng(4)
    train = Interactions(rng.integers(0, nu, 300), rng.integers(0, ni, 300))
    test = Interactions(rng.integers(0, nu, 80), rng.integers(0, ni, 80))
    got = evaluate_recommender((ue, ie), test, train, (f"recall@{k}", f"ndcg@{k}"), chunk=7)
    recalls, ndcgs, norms = [], [], []
    for u in np.unique(test.user):
        r, n, rn = lightgcn_reference(
            ue[u] @ ie.T, set(test.item[test.user == u].tolist()), set(train.item[train.user == u].tolist()), k
        )
        recalls.append(r)
        ndcgs.append(n)
        norms.append(rn)
    assert abs(got[f"recall@{k}"] - np.mean(recalls)) < 1e-9
    assert abs(got[f"ndcg@{k}"] - np.mean(ndcgs)) < 1e-9
    assert abs(got[f"recall_norm@{k}"] - np.mean(norms)) < 1e-9
    assert got["n_users"] == len(np.unique(test.user))


def test_bpr_training_on_ml100k_improves_ndcg(tmp_path):
    """BPR through the run engine on real data: the loss falls and validation NDCG@20 rises well above
    the untrained model's."""
    from pathlib import Path

    import pytest

    from rankopt.config import load_config
    from rankopt.recsys.run import build_model, load_data
    from rankopt.runs import start_run

    shared = Path(__file__).resolve().parents[3] / "shared" / "data" / "recsys" / "ml-100k"
    if not shared.is_dir():
        pytest.skip("shared recsys data not present")
    cfg = load_config(
        None,
        [
            f"data.root={shared}",
            "data.rating_threshold=4",
            "loss.name=bpr",
            "model.dim=32",
            "model.layers=2",
            "train.epochs=3",
            "optim.lr=5e-3",
        ],
        task="recsys",
    )
    data = load_data(cfg)
    torch.manual_seed(cfg.train.seed)  # the engine's initial weights
    untrained = build_model(cfg, data.n_users, data.n_items, data.train)
    with torch.no_grad():
        before = evaluate_recommender(untrained.embeddings(), data.valid, data.train)["ndcg@20"]
    result, _ = start_run(cfg, tmp_path / "run", progress=False)
    losses = [h["loss"] for h in result["history"]]
    assert losses[-1] < losses[0] and result["history"][-1]["valid/ndcg@20"] > before + 0.02


def test_bpr_triples_are_valid_and_user_uniform():
    from rankopt.recsys.training import bpr_triples

    rng = np.random.default_rng(0)
    train = Interactions(np.array([0] * 9 + [1]), np.arange(10) % 10)  # user 0: 9 items, user 1: one
    users, pos, neg = bpr_triples(train, 20, rng)
    assert len(users) == 10
    seen = set(zip(train.user.tolist(), train.item.tolist()))
    assert all((u, p) in seen and (u, n) not in seen for u, p, n in zip(users.tolist(), pos.tolist(), neg.tolist()))
    many = np.concatenate([bpr_triples(train, 20, rng)[0] for _ in range(300)])
    assert abs(np.mean(many == 1) - 0.5) < 0.03  # users equally likely, as LightGCN-PyTorch samples
    users, _, _ = bpr_triples(train, 20, rng, sampling="interaction")
    assert sorted(users.tolist()) == sorted(train.user.tolist())


def test_uniform_negatives_are_never_positives():
    from rankopt.recsys.training import interaction_keys, uniform_negatives

    train, nu, ni = tiny(seed=5, n=40)
    keys = interaction_keys(train, ni)
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(nu), 50)
    neg = uniform_negatives(keys, ni, users, rng)
    seen = set(zip(train.user.tolist(), train.item.tolist()))
    assert not any((int(u), int(i)) in seen for u, i in zip(users, neg))


def test_ngcf_layer_equals_dense_formula():
    from rankopt.recsys import NGCF

    train, nu, ni = tiny(seed=2)
    model = NGCF(nu, ni, train, dim=4, layers=2)
    dense = normalized_adjacency(train, nu, ni).to_dense()
    x = torch.cat([model.user.weight, model.item.weight])
    outs = [x]
    for w1, w2 in zip(model.w1, model.w2):
        side = dense @ x
        x = torch.nn.functional.leaky_relu(w1(side + x) + w2(side * x), 0.2)
        outs.append(torch.nn.functional.normalize(x, dim=1))
    want = torch.cat(outs, dim=1)
    users, items = model.embeddings()
    torch.testing.assert_close(torch.cat([users, items]), want, atol=1e-5, rtol=1e-5)


def test_sparse_matmul_gradient_equals_dense():
    """The CSR product with its stored transpose gives the dense product's gradient, asymmetric case too."""
    from rankopt.recsys.graph import csr_pair, sparse_matmul

    train, nu, ni = tiny(seed=4)
    coo = normalized_adjacency(train, nu, ni, left=0.6, right=-0.1)
    forward, transposed = csr_pair(coo)
    x = torch.randn(nu + ni, 3, dtype=torch.float32, requires_grad=True)
    weights = torch.randn(nu + ni, 3)
    (sparse_matmul(forward, transposed, x) * weights).sum().backward()
    got = x.grad.clone()
    x.grad = None
    (coo.to_dense() @ x * weights).sum().backward()
    torch.testing.assert_close(got, x.grad)


def test_lightgcn_matches_pytorch_geometric():
    """Independent check: PyG's LightGCN (LGConv, uniform layer weights) on the same weights and graph."""
    import pytest

    pyg = pytest.importorskip("torch_geometric.nn.models")
    rng = np.random.default_rng(11)
    pairs = np.unique(np.stack([rng.integers(0, 15, 80), rng.integers(0, 25, 80)], 1), axis=0)
    train, nu, ni = Interactions(pairs[:, 0], pairs[:, 1]), 15, 25
    ours = LightGCN(nu, ni, train, dim=8, layers=3)
    theirs = pyg.LightGCN(nu + ni, embedding_dim=8, num_layers=3)
    with torch.no_grad():
        theirs.embedding.weight.copy_(torch.cat([ours.user.weight, ours.item.weight]))
    u, i = torch.from_numpy(pairs[:, 0]), torch.from_numpy(pairs[:, 1]) + nu
    edge_index = torch.stack([torch.cat([u, i]), torch.cat([i, u])])
    want = theirs.get_embedding(edge_index)
    users, items = ours.embeddings()
    torch.testing.assert_close(torch.cat([users, items]), want, atol=1e-5, rtol=1e-5)


def test_recbole_metrics_at_several_cutoffs_match_a_plain_loop():
    """p@K, hit@K, mrr@K, map@K at K = 3 and 10 at once, as RecBole defines them (MAP@K divides by
    min(K, test items)), on random scores with known items masked; per-user values in user order."""
    from rankopt.recsys.evaluation import metrics_at

    g = torch.Generator().manual_seed(5)
    nu, ni = 25, 40
    ue, ie = torch.randn(nu, 8, generator=g), torch.randn(ni, 8, generator=g)
    rng = np.random.default_rng(6)
    train = Interactions(rng.integers(0, nu, 200), rng.integers(0, ni, 200))
    test = Interactions(rng.integers(0, nu, 60), rng.integers(0, ni, 60))
    names = metrics_at([3, 10])
    got, per_user = evaluate_recommender((ue, ie), test, train, names, chunk=6, per_user=True)
    want = {n: [] for n in names}
    for u in np.unique(test.user):
        target = set(test.item[test.user == u].tolist())
        known = set(train.item[train.user == u].tolist()) - target
        scores = (ue[u] @ ie.T).tolist()
        ranked = [i for i in sorted(range(ni), key=lambda i: -scores[i]) if i not in known]
        for k in (3, 10):
            hits = [i in target for i in ranked[:k]]
            first = next((p for p, h in enumerate(hits, 1) if h), None)
            precisions = [sum(hits[:p]) / p for p in range(1, k + 1) if hits[p - 1]]
            want[f"p@{k}"].append(sum(hits) / k)
            want[f"hit@{k}"].append(float(any(hits)))
            want[f"mrr@{k}"].append(0.0 if first is None else 1 / first)
            want[f"map@{k}"].append(sum(precisions) / min(k, len(target)))
            want[f"recall@{k}"].append(sum(hits) / len(target))
    for name in ("p@3", "hit@3", "mrr@3", "map@3", "p@10", "hit@10", "mrr@10", "map@10", "recall@10"):
        assert got[name] == pytest.approx(np.mean(want[name]), abs=1e-12), name
        assert np.allclose(per_user[name], want[name], atol=1e-12), name
    assert per_user["user"].tolist() == np.unique(test.user).tolist()


def test_user_subset_progress_and_cutoff_checks():
    """users= restricts the mean to those users (equal to the mean of their per-user values); progress
    is told (users done, users in all) after each block; a K beyond the catalogue reads it whole, warned."""
    g = torch.Generator().manual_seed(7)
    ue, ie = torch.randn(20, 4, generator=g), torch.randn(15, 4, generator=g)
    rng = np.random.default_rng(8)
    train = Interactions(rng.integers(0, 20, 80), rng.integers(0, 15, 80))
    test = Interactions(np.arange(20), rng.integers(0, 15, 20))
    calls = []
    full, per_user = evaluate_recommender(
        (ue, ie),
        test,
        train,
        ("ndcg@5",),
        chunk=6,
        per_user=True,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(6, 20), (12, 20), (18, 20), (20, 20)]
    some = np.array([3, 5, 11, 19, 40])  # 40 has no test item: left out
    sub = evaluate_recommender((ue, ie), test, train, ("ndcg@5",), users=some)
    assert sub["n_users"] == 4 and sub["ndcg@5"] == pytest.approx(per_user["ndcg@5"][[3, 5, 11, 19]].mean(), abs=1e-12)
    assert full["n_users"] == 20
    with pytest.warns(UserWarning, match="ndcg@50: k beyond the 15 items"):
        beyond = evaluate_recommender((ue, ie), test, train, ("ndcg@50",))
    assert beyond["ndcg@50"] == pytest.approx(evaluate_recommender((ue, ie), test, train, ("ndcg@15",))["ndcg@15"])
    small = np.random.default_rng(3).normal(size=(4, 6))  # a 6-item catalogue: no default cut-off fits
    with pytest.warns(UserWarning, match="default cut-offs 10, 20, 50 exceed the 6 items"):
        out = evaluate_recommender(small, (np.arange(4), np.array([0, 2, 4, 5])))
    assert out["n_users"] == 4 and out["hit@6"] == 1.0 and "ndcg@6" in out


def test_per_user_values_written_as_csv_read_back(tmp_path):
    import csv

    from rankopt.recsys.evaluation import PerUser

    PerUser({"user": np.array([4, 9]), "ndcg@5": np.array([0.5, 1 / 3]), "recall@5": np.array([1.0, 0.0])}).write_csv(
        tmp_path / "u.csv"
    )
    rows = list(csv.reader((tmp_path / "u.csv").open()))
    assert rows[0] == ["user", "ndcg@5", "recall@5"]
    assert [int(r[0]) for r in rows[1:]] == [4, 9]
    assert [float(r[1]) for r in rows[1:]] == pytest.approx([0.5, 1 / 3], abs=1e-10) and rows[2][2] == "0"


def test_l2_with_item_counts_equals_the_repeated_indices():
    from rankopt.recsys.models import RECOMMENDERS

    rng = np.random.default_rng(0)
    graph = Interactions(rng.integers(0, 5, 20), rng.integers(0, 7, 20))
    model = RECOMMENDERS.entry("lightgcn").factory(5, 7, graph, dim=4)
    items = torch.tensor([0, 3, 3, 6, 6, 6])
    users = torch.tensor([1, 2])
    counts = torch.bincount(items, minlength=7)
    assert float(model.ego_penalty(users, item_counts=counts)) == pytest.approx(float(model.ego_penalty(users, items)))
