"""The sort-free ranking: items above and tied with each relevant item, counted by comparison (few
relevant items) or binary search (many), equal to a plain count; and evaluate's label-group path
(relevant items listed by label on a tree) equal to the level-matrix path and to brute force."""

import importlib

import numpy as np
import pytest
import torch

from rankopt.metrics import evaluate
from rankopt.metrics import ranking as ranking_module
from rankopt.metrics.ranking import count_above_and_tied

EVALUATE = importlib.import_module("rankopt.metrics.evaluate")  # the module, not the function


def plain_counts(scores, kept):
    above = [[sum(1 for s in row if s > u) for u in ks] for row, ks in zip(scores.tolist(), kept.tolist())]
    tied = [[sum(1 for s in row if s == u) for u in ks] for row, ks in zip(scores.tolist(), kept.tolist())]
    return torch.tensor(above), torch.tensor(tied)


@pytest.mark.parametrize("linear_max", [0, 32])  # 0: every row by binary search; 32: by comparison
@pytest.mark.parametrize("seed", range(4))
def test_counts_equal_a_plain_count_with_ties_and_minus_infinity(monkeypatch, linear_max, seed):
    monkeypatch.setattr(ranking_module, "LINEAR_COUNT_MAX", linear_max)
    monkeypatch.setattr(ranking_module, "_CACHE_BYTES", 64)  # several row blocks even on tiny rows
    monkeypatch.setattr(ranking_module, "_PLACEMENT_BYTES", 16 * 80)
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(-3, 4, (7, 40), generator=g).double()  # ties everywhere
    scores[torch.rand(7, 40, generator=g) < 0.1] = float("-inf")  # removed items (the query itself)
    pick = torch.stack([torch.randperm(40, generator=g)[:6] for _ in range(7)])
    kept = torch.sort(scores.gather(1, pick), dim=1, descending=True).values
    kept[:, -1] = float("-inf")  # an unused slot
    above, tied = count_above_and_tied(scores, kept)
    want_above, want_tied = plain_counts(scores, kept)
    finite = kept > float("-inf")
    assert torch.equal(above[finite], want_above[finite]) and torch.equal(tied[finite], want_tied[finite])


def hierarchy(n=240, seed=0, tied=True):
    g = torch.Generator().manual_seed(seed)
    fine = torch.randint(0, 30, (n,), generator=g)
    labels = torch.stack([fine, fine // 6], dim=1)  # a tree: 30 classes under 5 super-classes
    x = torch.randn(n, 4, generator=g)
    if tied:
        x = x.round()  # many exact ties, duplicates under other labels
    return x, labels


METRICS = ["ap", "mrr", "ndcg", "hit@1", "hit@10", "map@r", "r-precision", "hap", "asi", "ap/level1"]


@pytest.mark.parametrize("ties", ["expected", "pessimistic", "optimistic"])
def test_label_group_path_equals_the_level_matrix_path(monkeypatch, ties):
    """Tree labels take the label-group path; told they are no tree, evaluate compares the labels of
    every (query, item) pair and ranks by top-k over the level matrix — results must agree."""
    x, labels = hierarchy()
    grouped = evaluate(x, labels, metrics=METRICS, ties=ties, similarity="dot")
    monkeypatch.setattr(EVALUATE, "is_tree", lambda labels: False)
    compared = evaluate(x, labels, metrics=METRICS, ties=ties, similarity="dot")
    for name in METRICS:
        assert grouped[name] == pytest.approx(compared[name], abs=1e-12), name


def test_label_group_path_with_a_separate_gallery_and_many_relevant_items(monkeypatch):
    """Super-classes of ~50 items: more kept items than LINEAR_COUNT_MAX, so the binary-search count."""
    x, labels = hierarchy(n=300, seed=1)
    q, ql, gal, gl = x[:60], labels[:60], x[60:], labels[60:]
    fast = evaluate(q, ql, gal, gl, metrics=METRICS, similarity="dot")
    monkeypatch.setattr(EVALUATE, "is_tree", lambda labels: False)
    slow = evaluate(q, ql, gal, gl, metrics=METRICS, similarity="dot")
    for name in METRICS:
        assert fast[name] == pytest.approx(slow[name], abs=1e-12), name


def test_flat_labels_with_unseen_query_labels_and_brute_force_ap():
    """Queries whose label is absent from the gallery are left out; the rest equal a brute-force AP
    (pessimistic ties: relevant items last within a tie, by a plain loop)."""
    g = torch.Generator().manual_seed(3)
    gal, gl = torch.randn(80, 3, generator=g).round(), torch.randint(0, 6, (80,), generator=g)
    q, ql = torch.randn(20, 3, generator=g).round(), torch.randint(0, 8, (20,), generator=g)
    out = evaluate(q, ql, gal, gl, metrics=["ap"], ties="pessimistic", similarity="dot")
    aps = []
    for i in range(20):
        rel = (gl == ql[i]).numpy()
        if not rel.any():
            continue
        s = (gal @ q[i]).numpy()
        order = np.lexsort((rel, -s))  # by score, relevant items last within a tie
        hits = rel[order]
        aps.append(np.mean([hits[: k + 1].sum() / (k + 1) for k in np.flatnonzero(hits)]))
    assert out["ap"] == pytest.approx(np.mean(aps), abs=1e-12)
    assert out["n_excluded"] == int(sum(not (gl == ql[i]).any() for i in range(20)))
