"""rankopt against trec_eval itself (pytrec-eval-terrier: trec_eval's C code), on its own measure names:
graded and binary relevance without ties, a cut-off beyond the list, and a tie where trec_eval's order
is one of the orderings rankopt averages over."""

from __future__ import annotations

import numpy as np
import pytest

from rankopt.metrics import rank_metrics

pytrec_eval = pytest.importorskip("pytrec_eval")

TREC = [
    "map",
    "map_cut_5",
    "map_cut_10",
    "P_5",
    "P_10",
    "recall_5",
    "recall_10",
    "ndcg_cut_5",
    "ndcg_cut_10",
    "recip_rank",
    "Rprec",
]


def trec(scores: np.ndarray, relevance: np.ndarray, measures: list[str]) -> dict[str, np.ndarray]:
    """trec_eval's per-query values (queries with a relevant document)."""
    qrels = {f"q{i}": {f"d{j:04d}": int(relevance[i, j]) for j in range(scores.shape[1])} for i in range(len(scores))}
    run = {f"q{i}": {f"d{j:04d}": float(scores[i, j]) for j in range(scores.shape[1])} for i in range(len(scores))}
    families = {m.rsplit("_", 1)[0] if m[-1].isdigit() else m for m in measures}
    out = pytrec_eval.RelevanceEvaluator(qrels, families).evaluate(run)
    return {m: np.array([out[f"q{i}"][m] for i in range(len(scores))]) for m in measures}


@pytest.mark.parametrize("graded", [False, True])
def test_trec_eval_names_give_trec_evals_numbers(graded):
    rng = np.random.default_rng(0)
    scores = rng.permutation(40 * 30).reshape(40, 30).astype(np.float64)  # untied
    relevance = rng.integers(0, 4 if graded else 2, size=(40, 30)) * (rng.random((40, 30)) < 0.4)
    relevance[:, 0] = np.maximum(relevance[:, 0], 1)  # every query has a relevant document
    theirs = trec(scores, relevance, TREC + ["ndcg"])
    ours = rank_metrics(scores, relevance, TREC + ["ndcg_lin"], n_levels=int(relevance.max()))
    for m in TREC:
        np.testing.assert_allclose(ours[m].numpy(), theirs[m], atol=1e-9, err_msg=m)
    np.testing.assert_allclose(ours["ndcg_lin"].numpy(), theirs["ndcg"], atol=1e-9)  # trec_eval's ndcg: linear gains


def test_a_cut_off_beyond_the_list_pads_as_trec_eval_does():
    scores = np.array([[6.0, 5, 4, 3, 2, 1]])
    relevance = np.array([[1, 0, 1, 0, 0, 0]])
    with pytest.warns(UserWarning, match="k beyond the 6 items per row"):
        ours = rank_metrics(scores, relevance, ["P_10", "recall_10", "ndcg_cut_10", "map_cut_10"])
    theirs = trec(scores, relevance, ["P_10", "recall_10", "ndcg_cut_10", "map_cut_10"])
    assert float(ours["P_10"][0]) == pytest.approx(0.2) == theirs["P_10"][0]
    for m in theirs:
        assert float(ours[m][0]) == pytest.approx(theirs[m][0], abs=1e-9), m


def test_ties_trec_evals_order_is_one_of_those_rankopt_averages():
    """Two documents tied at the top, one relevant: trec_eval breaks the tie by document name; rankopt's
    expectation is the mean of both orders, between the pessimistic and the optimistic values."""
    scores = np.array([[1.0, 1.0, 0.5, 0.2]])
    relevance = np.array([[0, 1, 0, 1]])
    theirs = trec(scores, relevance, ["map", "recip_rank"])
    lo = rank_metrics(scores, relevance, ["map", "recip_rank"], ties="pessimistic")
    hi = rank_metrics(scores, relevance, ["map", "recip_rank"], ties="optimistic")
    mid = rank_metrics(scores, relevance, ["map", "recip_rank"])
    for m in ("map", "recip_rank"):
        assert theirs[m][0] in (pytest.approx(float(lo[m][0])), pytest.approx(float(hi[m][0])))
        assert float(mid[m][0]) == pytest.approx((float(lo[m][0]) + float(hi[m][0])) / 2)


def test_linear_gain_ndcg_equals_scikit_learn_on_graded_relevance():
    from sklearn.metrics import ndcg_score

    rng = np.random.default_rng(1)
    scores = rng.permutation(20 * 25).reshape(20, 25).astype(np.float64)
    relevance = rng.integers(0, 4, size=(20, 25))
    ours = rank_metrics(scores, relevance, ["ndcg_lin@10", "ndcg_lin"], n_levels=3, reduce="mean")
    assert ours["ndcg_lin@10"] == pytest.approx(ndcg_score(relevance, scores, k=10), abs=1e-12)
    assert ours["ndcg_lin"] == pytest.approx(ndcg_score(relevance, scores), abs=1e-12)
