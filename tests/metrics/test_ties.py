"""ties='expected' equals brute-force enumeration of every order of tied scores; invariants by hypothesis."""

import math
import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import reference_metrics as ref
from rankopt.metrics import rank_metrics

METRICS = (
    "ap,map@r,r-precision,hit@1,hit@3,p@2,recall@3,mrr,mrr@2,mrr@3,map@3,map@5,ndcg,ndcg@3,hap,asi,"
    "ap/level1,hit@2/level1"
)


def reference_values(scores, levels, n_levels, ties):
    e = lambda fn, **kw: ref.expected(fn, scores, levels, ties, **kw)
    L = n_levels
    return {
        "ap": e(ref.ap, level=L),
        "map@r": e(ref.map_at_r, level=L),
        "r-precision": e(ref.r_precision, level=L),
        "hit@1": e(ref.hit_at_k, level=L, k=1),
        "hit@3": e(ref.hit_at_k, level=L, k=3),
        "p@2": e(ref.p_at_k, level=L, k=2),
        "recall@3": e(ref.recall_at_k, level=L, k=3),
        "mrr": e(ref.mrr, level=L),
        "mrr@2": e(ref.mrr_at_k, level=L, k=2),
        "mrr@3": e(ref.mrr_at_k, level=L, k=3),
        "map@3": e(ref.map_at_k, level=L, k=3),
        "map@5": e(ref.map_at_k, level=L, k=5),
        "ndcg": e(ref.ndcg),
        "ndcg@3": e(ref.ndcg, k=3),
        "hap": e(ref.hap, n_levels=L),
        "asi": e(ref.asi),
        "ap/level1": e(ref.ap, level=1),
        "hit@2/level1": e(ref.hit_at_k, level=1, k=2),
    }


def random_case(rng, n_items, n_levels, n_distinct):
    scores = [rng.randrange(n_distinct) / n_distinct for _ in range(n_items)]
    levels = [rng.randrange(n_levels + 1) for _ in range(n_items)]
    levels[rng.randrange(n_items)] = n_levels  # at least one item of the finest level
    return scores, levels


@pytest.mark.parametrize("ties", ["expected", "pessimistic", "optimistic"])
@pytest.mark.parametrize("seed", range(12))
def test_matches_enumeration_of_tie_orders(seed, ties):
    rng = random.Random(seed)
    n_levels = 1 + seed % 3
    scores, levels = random_case(rng, n_items=7, n_levels=n_levels, n_distinct=3)
    got = rank_metrics(torch.tensor([scores]), torch.tensor([levels]), METRICS, ties=ties, n_levels=n_levels)
    want = reference_values(scores, levels, n_levels, ties)
    for name, value in want.items():
        assert float(got[name][0]) == pytest.approx(value, abs=1e-9), name


def test_all_items_tied():
    scores, levels = [0.0] * 6, [1, 0, 0, 1, 0, 0]
    got = rank_metrics(torch.tensor([scores]), torch.tensor([levels]), "ap,hit@1,mrr,asi")
    assert float(got["ap"][0]) == pytest.approx(ref.expected(ref.ap, scores, levels, level=1))
    assert float(got["hit@1"][0]) == pytest.approx(2 / 6)
    assert float(got["mrr"][0]) == pytest.approx(ref.expected(ref.mrr, scores, levels, level=1))
    assert float(got["asi"][0]) == pytest.approx(ref.expected(ref.asi, scores, levels))


rows = st.integers(min_value=2, max_value=9).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 3), min_size=n, max_size=n),
        st.lists(st.integers(0, 2), min_size=n, max_size=n),
        st.randoms(use_true_random=False),
    )
)


@settings(max_examples=60, deadline=None)
@given(rows)
def test_permuting_items_changes_nothing_under_expected_ties(case):
    SHORT = ",".join(n for n in METRICS.split(",") if not n.endswith(("@3", "@5")))  # rows may hold 2 items
    scores, levels, rnd = case
    levels[0] = 2
    perm = list(range(len(scores)))
    rnd.shuffle(perm)
    a = rank_metrics(torch.tensor([scores]), torch.tensor([levels]), SHORT, n_levels=2)
    b = rank_metrics(
        torch.tensor([[scores[i] for i in perm]]),
        torch.tensor([[levels[i] for i in perm]]),
        SHORT,
        n_levels=2,
    )
    for name in a:
        assert float(a[name][0]) == pytest.approx(float(b[name][0]), abs=1e-12), name


@settings(max_examples=60, deadline=None)
@given(rows)
def test_pessimistic_le_expected_le_optimistic(case):
    scores, levels, _ = case
    levels[0] = 2
    names = "ap,map@r,r-precision,hit@1,p@2,mrr,ndcg,asi,ap/level1"
    out = {
        t: rank_metrics(torch.tensor([scores]), torch.tensor([levels]), names, ties=t, n_levels=2)
        for t in ("pessimistic", "expected", "optimistic")
    }
    for name in out["expected"]:
        lo, mid, hi = (float(out[t][name][0]) for t in ("pessimistic", "expected", "optimistic"))
        assert lo <= mid + 1e-12 and mid <= hi + 1e-12, (name, lo, mid, hi)


def test_hap_equals_ap_on_flat_labels():
    rng = random.Random(3)
    scores = [rng.random() for _ in range(30)]
    levels = [int(rng.random() < 0.3) for _ in range(30)]
    levels[0] = 1
    got = rank_metrics(torch.tensor([scores]), torch.tensor([levels]), "ap,hap")
    assert float(got["hap"][0]) == pytest.approx(float(got["ap"][0]), abs=1e-12)


def test_many_queries_at_once_equal_one_by_one():
    rng = random.Random(5)
    cases = [random_case(rng, 8, 2, 4) for _ in range(6)]
    s = torch.tensor([c[0] for c in cases])
    lv = torch.tensor([c[1] for c in cases])
    together = rank_metrics(s, lv, METRICS, n_levels=2)
    for q in range(6):
        alone = rank_metrics(s[q : q + 1], lv[q : q + 1], METRICS, n_levels=2)
        for name in together:
            a, b = float(together[name][q]), float(alone[name][0])
            assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-12)


def test_asi_of_several_partially_tied_rows_at_once_matches_enumeration():
    """The hypergeometric expectation of ASI's tied positions, computed for many rows in one call
    (each row its own tie groups and counts) equals each row's enumeration."""
    rows = [
        ([0, 0, 0.5, 0.5, 0.5, 0, 0], [3, 1, 1, 1, 1, 1, 1]),
        ([0.5, 0.5, 0, 0, 0.5, 1, 0], [1, 3, 2, 3, 0, 1, 3]),
        ([1, 0.5, 0.5, 0.5, 0.5, 0, 0], [3, 3, 1, 2, 3, 1, 0]),
        ([0, 0, 0, 0, 0.5, 0.5, 0.5], [3, 2, 2, 1, 1, 3, 3]),
    ]
    scores = torch.tensor([r[0] for r in rows], dtype=torch.float64)
    levels = torch.tensor([r[1] for r in rows])
    got = rank_metrics(scores, levels, "asi,ndcg,hap", n_levels=3)
    for q, (s, lv) in enumerate(rows):
        assert float(got["asi"][q]) == pytest.approx(ref.expected(ref.asi, s, lv), abs=1e-9), q
        assert float(got["ndcg"][q]) == pytest.approx(ref.expected(ref.ndcg, s, lv), abs=1e-9), q


@pytest.mark.parametrize("seed", range(6))
def test_prefix_metrics_alone_follow_a_tie_across_the_cut(seed):
    """hit@k, p@k, recall@k asked alone take the top-k path, which must follow a tie group straddling
    position k to its end; asked with ap they take the full-sort path (checked against enumeration
    above). Heavily tied scores, galleries long enough (59 items) for the top-k path to be taken."""
    from rankopt.metrics import evaluate

    g = torch.Generator().manual_seed(seed)
    emb = torch.randint(0, 3, (60, 2), generator=g).double()  # few distinct dot products: long ties
    labels = torch.randint(0, 5, (60,), generator=g)
    names = ["hit@1", "p@3", "recall@5", "mrr@3", "map@4"]
    full = evaluate(emb, labels, metrics=names + ["ap"], similarity="dot")
    for backend in ("torch", "faiss"):
        alone = evaluate(emb, labels, metrics=names, similarity="dot", backend=backend)
        for name in names:
            assert alone[name] == pytest.approx(full[name], abs=1e-9), (backend, name)


def test_prefix_metrics_when_every_item_ties():
    """All 40 items tied (per query 39 ranked, R of them relevant): by linearity of expectation a random
    order gives P(first is relevant) = R/39, expected precision@k = R/39, expected recall@k = k/39."""
    from rankopt.metrics import evaluate

    labels = torch.tensor([0] * 10 + [1] * 30)
    emb = torch.ones(40, 3, dtype=torch.float64)
    got = evaluate(emb, labels, metrics=["hit@1", "p@3", "recall@5"], similarity="dot")
    mean_r = (10 * 9 + 30 * 29) / 40
    assert got["hit@1"] == pytest.approx(mean_r / 39, abs=1e-12)
    assert got["p@3"] == pytest.approx(mean_r / 39, abs=1e-12)
    assert got["recall@5"] == pytest.approx(5 / 39, abs=1e-12)
