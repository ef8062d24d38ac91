"""Golden vectors V1–V8 of reference/peers.md §3.6 (values computed with sklearn / torchmetrics / by hand)."""

import math

import pytest
import torch

from rankopt.metrics import rank_metrics


def one(scores, rel, metrics, **kw):
    out = rank_metrics(torch.tensor([scores], dtype=torch.float64), torch.tensor([rel]), metrics, **kw)
    return {k: float(v[0]) for k, v in out.items()}


def test_v1_untied_binary():
    m = one([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0], "ap,mrr,hit@1,recall@1,p@2,r-precision,ndcg")
    assert m["ap"] == pytest.approx(0.833333, abs=1e-6)
    assert m["mrr"] == 1.0 and m["hit@1"] == 1.0
    assert m["recall@1"] == 0.5 and m["p@2"] == 0.5 and m["r-precision"] == 0.5
    assert m["ndcg"] == pytest.approx(0.919721, abs=1e-6)


def test_v2_negative_scores_count():
    # torchmetrics >= 1.7.4 drops the positive scored -0.1 and reports 1.0; the true AP is 0.8333
    m = one([0.5, 0.3, -0.1, -0.2], [1, 0, 1, 0], "ap,ndcg")
    assert m["ap"] == pytest.approx(0.833333, abs=1e-6)
    assert m["ndcg"] == pytest.approx(0.919721, abs=1e-6)


def test_v3_all_negative_scores():
    m = one([-0.1, -0.2, -0.3], [1, 0, 1], "ap,mrr,recall@1,p@2,hit@1,r-precision")
    assert m["ap"] == pytest.approx(0.833333, abs=1e-6)
    assert m["mrr"] == 1.0 and m["recall@1"] == 0.5 and m["p@2"] == 0.5
    assert m["hit@1"] == 1.0 and m["r-precision"] == 0.5


@pytest.mark.parametrize("rel", [[1, 0, 0], [0, 1, 0]])
def test_v4_tie_at_the_top_does_not_depend_on_order(rel):
    m = one([0.5, 0.5, 0.1], rel, "ap,hit@1,ndcg")
    assert m["ap"] == pytest.approx(0.75)  # 1.0 or 0.5 with equal probability
    assert m["hit@1"] == pytest.approx(0.5)
    assert m["ndcg"] == pytest.approx(0.815465, abs=1e-6)


def test_v5_three_tie_policies():
    s, r = [0.9, 0.5, 0.5, 0.5, 0.1], [0, 1, 0, 0, 1]
    assert one(s, r, "ap")["ap"] == pytest.approx(0.380556, abs=1e-6)
    assert one(s, r, "ap", ties="pessimistic")["ap"] == pytest.approx(0.325)
    assert one(s, r, "ap", ties="optimistic")["ap"] == pytest.approx(0.45)
    assert one(s, r, "ndcg")["ndcg"] == pytest.approx(0.5564, abs=5e-5)  # sklearn = torchmetrics


def test_v6_graded_exponential_gain():
    m = one([0.1, 0.9, 0.5, 0.7], [3, 2, 0, 1], "ndcg")
    assert m["ndcg"] == pytest.approx(0.70753, abs=1e-5)


def test_v7_full_ap_and_cutoffs():
    m = one([0.9, 0.8, 0.7, 0.6, 0.5], [0, 1, 0, 1, 1], "ap,map@r,p@2,recall@2,mrr")
    assert m["ap"] == pytest.approx(0.533333, abs=1e-6)
    assert m["map@r"] == pytest.approx(1 / 6)
    assert m["p@2"] == 0.5 and m["recall@2"] == pytest.approx(1 / 3) and m["mrr"] == 0.5


def test_v8_no_relevant_item_is_nan_not_zero():
    m = one([0.9, 0.8, 0.7], [0, 0, 0], "ap,hit@1,ndcg,hap")
    assert all(math.isnan(v) for v in m.values())
