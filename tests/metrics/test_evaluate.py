"""evaluate() on embeddings against independent implementations: scikit-learn, pytorch-metric-learning,
torchmetrics and a brute-force loop; chunking, backends, galleries, duplicates and no-positive policies."""

import numpy as np
import pytest
import torch

import reference_metrics as ref
from rankopt.metrics import evaluate, evaluate_per_query


def make_data(n=300, d=16, n_classes=20, seed=0, lone=True):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, n_classes, (n,), generator=g)
    if lone:
        labels[0] = n_classes + 5  # a query whose label nobody else has
    centers = torch.randn(n_classes + 6, d, generator=g)
    x = centers[labels] + 1.5 * torch.randn(n, d, generator=g)
    return torch.nn.functional.normalize(x, dim=1).to(torch.float64), labels


def brute_force(x, labels, metric_fn, gallery=None, gallery_labels=None):
    """Per query: rank the gallery by cosine (stable order, self removed), apply a reference metric."""
    if gallery is None:
        gallery, gallery_labels, same = x, labels, True
    else:
        same = False
    s = x @ gallery.T
    out = []
    for q in range(x.shape[0]):
        idx = [j for j in range(gallery.shape[0]) if not (same and j == q)]
        order = sorted(idx, key=lambda j: -float(s[q, j]))
        lv = [int(gallery_labels[j] == labels[q]) for j in order]
        out.append(metric_fn(lv) if any(lv) else np.nan)
    return np.array(out)


def test_against_sklearn_ap_and_ndcg():
    from sklearn.metrics import average_precision_score, ndcg_score

    x, y = make_data()
    res = evaluate_per_query(x, y, metrics=["ap", "ndcg"])
    s = (x @ x.T).numpy()
    for q in range(0, x.shape[0], 7):
        keep = np.arange(x.shape[0]) != q
        target = (y[keep] == y[q]).numpy()
        if not target.any():
            assert np.isnan(res.values["ap"][q])
            continue
        assert res.values["ap"][q] == pytest.approx(average_precision_score(target, s[q, keep]), abs=1e-6)
        assert res.values["ndcg"][q] == pytest.approx(ndcg_score(target[None], s[q, keep][None]), abs=1e-6)


def test_against_pytorch_metric_learning():
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    x, y = make_data(n=400, seed=1)
    calc = AccuracyCalculator(
        include=("mean_average_precision_at_r", "precision_at_1", "r_precision"),
        k="max_bin_count",
        device=torch.device("cpu"),
    )
    pml = calc.get_accuracy(x.float(), y, x.float(), y, ref_includes_query=True)
    ours = evaluate(x, y, metrics=["map@r", "p@1", "r-precision"])
    assert ours["map@r"] == pytest.approx(pml["mean_average_precision_at_r"], abs=1e-6)
    assert ours["p@1"] == pytest.approx(pml["precision_at_1"], abs=1e-6)
    assert ours["r-precision"] == pytest.approx(pml["r_precision"], abs=1e-6)
    assert ours["n_excluded"] == 1  # the lone query, which PML also leaves out


def test_against_torchmetrics_hit_rate_and_recall():
    from torchmetrics.functional.retrieval import retrieval_hit_rate, retrieval_recall

    x, y = make_data(n=200, seed=2)
    res = evaluate_per_query(x, y, metrics=["hit@5", "recall@5"])
    s = x @ x.T + 2.0  # positive scores: torchmetrics drops relevant items scored <= 0
    for q in range(1, 200, 11):
        keep = torch.arange(200) != q
        target = y[keep] == y[q]
        assert res.values["hit@5"][q] == pytest.approx(float(retrieval_hit_rate(s[q, keep], target, top_k=5)), abs=1e-6)
        assert res.values["recall@5"][q] == pytest.approx(
            float(retrieval_recall(s[q, keep], target, top_k=5)), abs=1e-6
        )


@pytest.mark.parametrize(
    "name,fn",
    [
        ("map@r", lambda lv: ref.map_at_r(lv, 1)),
        ("mrr", lambda lv: ref.mrr(lv, 1)),
        ("hit@10", lambda lv: ref.hit_at_k(lv, 1, 10)),
        ("r-precision", lambda lv: ref.r_precision(lv, 1)),
    ],
)
def test_against_brute_force_loop(name, fn):
    x, y = make_data(n=150, seed=3)
    got = evaluate_per_query(x, y, metrics=[name]).values[name]
    want = brute_force(x, y, fn)
    np.testing.assert_allclose(got, want, atol=1e-9)


def test_chunking_and_prefix_paths_agree_with_one_block():
    x, y = make_data(n=257, seed=4)
    names = ["ap", "map@r", "hit@1", "hit@7", "p@3", "recall@9", "r-precision", "mrr", "ndcg@5"]
    one = evaluate(x, y, metrics=names, memory_budget=1 << 34)
    many = evaluate(x, y, metrics=names, memory_budget=20_000)  # forces tiny query blocks
    prefix_only = evaluate(x, y, metrics=[n for n in names if n not in ("ap", "mrr")], memory_budget=5_000)
    for n in names:
        assert many[n] == pytest.approx(one[n], abs=1e-12)
        if n in prefix_only:
            assert prefix_only[n] == pytest.approx(one[n], abs=1e-12)


def test_faiss_backend_matches_torch():
    pytest.importorskip("faiss")
    x, y = make_data(n=200, seed=5)
    names = ["map@r", "hit@1", "hit@10", "p@5", "r-precision", "recall@10"]
    a = evaluate(x.float(), y, metrics=names)
    b = evaluate(x.float(), y, metrics=names, backend="faiss")
    for n in names:
        assert b[n] == pytest.approx(a[n], abs=1e-6)
    with pytest.raises(ValueError, match="full ranking"):
        evaluate(x, y, metrics=["ap"], backend="faiss")


def test_separate_gallery_matches_brute_force():
    x, y = make_data(n=120, seed=6, lone=False)
    g, gy = make_data(n=90, seed=7, lone=False)
    got = evaluate_per_query(x, y, g, gy, metrics=["ap"]).values["ap"]
    want = brute_force(x, y, lambda lv: ref.ap(lv, 1), g, gy)
    np.testing.assert_allclose(got, want, atol=1e-9)


def test_self_removed_by_index_with_duplicates():
    # items 0 and 1 are identical embeddings with different labels: position-based removal of "the first hit"
    # would drop the wrong one for one of them
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=torch.float64)
    y = torch.tensor([0, 1, 0, 1])
    res = evaluate_per_query(x, y, metrics=["hit@1", "ap"])
    # query 0 (label 0): ranks item 1 (label 1, score 1), then 3, then 2 (label 0) → AP 1/3
    assert res.values["ap"][0] == pytest.approx(1 / 3)
    assert res.values["hit@1"][0] == 0.0
    assert res.values["ap"][1] == pytest.approx(1 / 2)  # query 1: item 0 (no), item 3 (yes) → 1/2


def test_order_of_input_does_not_matter_with_exact_ties():
    # integer-valued embeddings: scores are exact, so duplicates tie exactly whatever their position
    g = torch.Generator().manual_seed(8)
    x = torch.randint(-2, 3, (60, 3), generator=g).to(torch.float64)
    x[x.norm(dim=1) == 0] = 1.0
    y = torch.randint(0, 4, (60,), generator=g)
    perm = torch.randperm(60, generator=g)
    names = ["ap", "map@r", "hit@1", "mrr", "ndcg", "r-precision"]
    a = evaluate(x, y, metrics=names, similarity="dot")
    b = evaluate(x[perm], y[perm], metrics=names, similarity="dot")
    for n in names:
        assert a[n] == pytest.approx(b[n], abs=1e-12)


def test_hierarchical_metrics_against_direct_loop():
    g = torch.Generator().manual_seed(9)
    fine = torch.randint(0, 12, (90,), generator=g)
    labels = torch.stack([fine, fine // 4], dim=1)  # 12 classes in 3 super-classes
    x = torch.nn.functional.normalize(torch.randn(90, 8, dtype=torch.float64, generator=g), dim=1)
    res = evaluate_per_query(x, labels, metrics=["hap", "asi", "ndcg", "ap/level1"]).values
    s = x @ x.T
    for q in range(0, 90, 9):
        order = sorted((j for j in range(90) if j != q), key=lambda j: -float(s[q, j]))
        lv = [int((labels[j] == labels[q]).sum()) for j in order]
        assert res["hap"][q] == pytest.approx(ref.hap(lv, 2), abs=1e-9)
        assert res["asi"][q] == pytest.approx(ref.asi(lv), abs=1e-9)
        assert res["ndcg"][q] == pytest.approx(ref.ndcg(lv), abs=1e-9)
        assert res["ap/level1"][q] == pytest.approx(ref.ap(lv, 1), abs=1e-9)


def test_non_tree_labels_count_levels_by_comparison():
    # fine label 0 appears under two coarse labels: not a tree; levels are still "shared columns"
    labels = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1], [0, 0], [2, 1]])
    x = torch.nn.functional.normalize(
        torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1)), dim=1
    )
    res = evaluate_per_query(x, labels, metrics=["hap", "ap/level1"]).values
    s = x @ x.T
    for q in range(6):
        order = sorted((j for j in range(6) if j != q), key=lambda j: -float(s[q, j]))
        lv = [int((labels[j] == labels[q]).sum()) for j in order]
        assert res["ap/level1"][q] == pytest.approx(ref.ap(lv, 1), abs=1e-9)
        assert res["hap"][q] == pytest.approx(ref.hap(lv, 2), abs=1e-9)


def test_no_positive_policies():
    x, y = make_data(n=80, seed=10)  # query 0 is lone
    lone = int((torch.bincount(y)[y] == 1).sum())
    per = evaluate_per_query(x, y, metrics=["ap"]).values["ap"]
    excl = evaluate(x, y, metrics=["ap"])
    zero = evaluate(x, y, metrics=["ap"], no_positive="zero")
    assert lone >= 1 and excl["n_excluded"] == lone and zero["n_excluded"] == 0
    assert excl["ap"] == pytest.approx(np.nanmean(per))
    assert zero["ap"] == pytest.approx(np.nansum(per) / 80)
    with pytest.raises(ValueError, match="no relevant item for 'ap'.*query 0"):
        evaluate(x, y, metrics=["ap"], no_positive="error")


def test_euclidean_and_dot_rankings():
    x, y = make_data(n=100, seed=11)
    x = x * torch.linspace(0.5, 2.0, 100, dtype=torch.float64).unsqueeze(1)
    for sim, score in [("dot", x @ x.T), ("euclidean", -(torch.cdist(x, x) ** 2))]:
        got = evaluate_per_query(x, y, metrics=["ap"], similarity=sim).values["ap"]
        for q in range(1, 100, 13):
            order = sorted((j for j in range(100) if j != q), key=lambda j: -float(score[q, j]))
            lv = [int(y[j] == y[q]) for j in order]
            assert got[q] == pytest.approx(ref.ap(lv, 1), abs=1e-9), sim


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_equals_cpu():
    x, y = make_data(n=500, seed=12)
    names = ["ap", "map@r", "hit@1", "ndcg", "mrr"]
    a = evaluate(x, y, metrics=names)
    b = evaluate(x, y, metrics=names, device="cuda")
    for n in names:
        assert b[n] == pytest.approx(a[n], abs=1e-9)


@pytest.mark.parametrize("ties", ["expected", "pessimistic", "optimistic"])
def test_prefix_path_equals_full_path_on_heavily_tied_scores(ties):
    g = torch.Generator().manual_seed(13)
    x = torch.randint(-1, 2, (80, 2), generator=g).to(torch.float64)  # 9 distinct points: huge ties
    x[x.norm(dim=1) == 0] = 1.0
    fine = torch.randint(0, 6, (80,), generator=g)
    y = torch.stack([fine, fine // 3], dim=1)
    prefix = ["map@r", "hit@1", "hit@5", "p@3", "recall@4", "r-precision", "ndcg@5", "asi", "hit@2/level1"]
    a = evaluate(x, y, metrics=prefix, similarity="dot", ties=ties)
    b = evaluate(x, y, metrics=prefix + ["ap"], similarity="dot", ties=ties)  # "ap" forces the full path
    for n in prefix:
        assert a[n] == pytest.approx(b[n], abs=1e-12), n


@pytest.mark.parametrize("tree", [True, False])
def test_level_counts_over_several_query_chunks_equal_a_plain_count(tree):
    """Per-level counts, computed in chunks of 7 queries (non-tree labels) or by label suffix (tree),
    equal a plain loop; with queries_in_gallery each query's own item is not counted."""
    from rankopt.relevance import level_counts, levels

    g = torch.Generator().manual_seed(1)
    fine = torch.randint(0, 12, (40,), generator=g)
    coarse = (
        fine // 4 if tree else torch.randint(0, 3, (40,), generator=g)
    )  # not a tree: a fine label under several coarse
    labels = torch.stack([fine, coarse], dim=1)
    got = level_counts(labels, labels, queries_in_gallery=True, chunk_size=7)
    lv = levels(labels, labels).to(torch.int64)
    want = torch.stack([torch.bincount(row, minlength=3) for row in lv])
    want[:, 2] -= 1  # the query itself
    assert torch.equal(got, want)
