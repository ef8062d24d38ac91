"""ties='expected' equals brute-force enumeration of every order of tied scores; invariants by hypothesis."""

import math
import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import reference_metrics as ref
from rankopt.metrics import rank_metrics

METRICS = "ap,map@r,r-precision,hit@1,hit@3,p@2,recall@3,mrr,ndcg,ndcg@3,hap,asi,ap/level1,hit@2/level1"


def reference_values(scores, levels, n_levels, ties):
    e = lambda fn, **kw: ref.expected(fn, scores, levels, ties, **kw)  # noqa: E731
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
    scores, levels, rnd = case
    levels[0] = 2
    perm = list(range(len(scores)))
    rnd.shuffle(perm)
    a = rank_metrics(torch.tensor([scores]), torch.tensor([levels]), METRICS.replace(",hit@3", "").replace(",recall@3", "").replace(",ndcg@3", ""), n_levels=2)
    b = rank_metrics(
        torch.tensor([[scores[i] for i in perm]]), torch.tensor([[levels[i] for i in perm]]),
        METRICS.replace(",hit@3", "").replace(",recall@3", "").replace(",ndcg@3", ""), n_levels=2,
    )
    for name in a:
        assert float(a[name][0]) == pytest.approx(float(b[name][0]), abs=1e-12), name


@settings(max_examples=60, deadline=None)
@given(rows)
def test_pessimistic_le_expected_le_optimistic(case):
    scores, levels, _ = case
    levels[0] = 2
    names = "ap,map@r,r-precision,hit@1,p@2,mrr,ndcg,asi,ap/level1"
    out = {t: rank_metrics(torch.tensor([scores]), torch.tensor([levels]), names, ties=t, n_levels=2) for t in ("pessimistic", "expected", "optimistic")}
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
