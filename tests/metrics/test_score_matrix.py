"""rank_metrics and evaluate_recommender on a score matrix a recommender already has, called the
RecBole way (history masked with -inf, sparse or bool relevance), checked against RecBole's
definitions written as a plain loop."""

import math
import pathlib
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from rankopt.metrics import rank_metrics
from rankopt.recsys.data import Interactions
from rankopt.recsys.evaluation import evaluate_recommender, metrics_at

RECBOLE = ["recall@10", "ndcg@10", "mrr@10", "precision@10", "hr@10", "map@10"]


def recbole_loop(scores, target, k):
    """RecBole's metrics for one user (docs of recbole.evaluator.metrics): full ranking of the
    unmasked items, binary relevance; NDCG's ideal DCG over min(|R|, K); MAP@K ÷ min(|R|, K)."""
    ranked = [i for i in sorted(range(len(scores)), key=lambda i: -scores[i]) if scores[i] != -math.inf]
    hits = [i in target for i in ranked[:k]]
    first = next((p for p, h in enumerate(hits, 1) if h), None)
    dcg = sum(h / math.log2(p + 2) for p, h in enumerate(hits))
    idcg = sum(1 / math.log2(p + 2) for p in range(min(k, len(target))))
    precisions = [sum(hits[:p]) / p for p in range(1, k + 1) if hits[p - 1]]
    return {
        f"recall@{k}": sum(hits) / len(target),
        f"ndcg@{k}": dcg / idcg,
        f"mrr@{k}": 0.0 if first is None else 1 / first,
        f"precision@{k}": sum(hits) / k,
        f"hr@{k}": float(any(hits)),
        f"map@{k}": sum(precisions) / min(k, len(target)),
    }


def recbole_data(seed=0, users=40, items=60):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(users, items))
    history = rng.random((users, items)) < 0.2
    test = (rng.random((users, items)) < 0.08) & ~history
    test[0] = False  # a user without test items: left out of the mean and counted
    return scores, history, test


def test_recbole_program_gives_recbole_numbers():
    scores, history, test = recbole_data()
    masked = scores.copy()
    masked[history] = -np.inf  # RecBole's way
    got = rank_metrics(masked, sp.csr_matrix(test), RECBOLE, reduce="mean")
    want = {n: [] for n in RECBOLE}
    for u in range(len(scores)):
        if test[u].any():
            for n, v in recbole_loop(masked[u].tolist(), set(np.flatnonzero(test[u]).tolist()), 10).items():
                want[n].append(v)
    for n in RECBOLE:
        assert got[n] == pytest.approx(np.mean(want[n]), abs=1e-12), n
    assert got["n_queries"] == 40 and got["n_excluded"] == 1


@pytest.mark.parametrize("form", ["int", "bool", "float01", "csr", "coo", "torch"])
def test_relevance_forms_and_mask_argument_agree(form):
    scores, history, test = recbole_data(seed=1)
    rel = {
        "int": test.astype(np.int64),
        "bool": test,
        "float01": test.astype(np.float32),
        "csr": sp.csr_matrix(test),
        "coo": sp.coo_matrix(test.astype(np.float64)),
        "torch": torch.from_numpy(test),
    }[form]
    by_mask = rank_metrics(scores, rel, RECBOLE + ["ap"], mask=history)
    masked = scores.copy()
    masked[history] = -np.inf
    by_inf = rank_metrics(masked, test.astype(np.int64), RECBOLE + ["ap"])
    for n in by_inf:
        torch.testing.assert_close(by_mask[n], by_inf[n], equal_nan=True)
    assert bool(torch.isnan(by_mask["ap"][0]))  # the user without test items


def test_prefix_path_equals_full_sort_on_heavy_ties_in_small_blocks():
    """Integer scores (ties everywhere, many straddling the cut): prefix metrics alone take the top-k
    path; with ap added every row is sorted. Blocks of 3 rows (tiny memory budget) change nothing."""
    rng = np.random.default_rng(2)
    scores = rng.integers(0, 4, size=(30, 50)).astype(np.float64)
    rel = rng.integers(0, 3, size=(30, 50))
    names = ["hit@1", "p@3", "recall@5", "ndcg@5", "mrr@4", "map@6", "map@r", "r-precision", "hit@1/level1"]
    prefix = rank_metrics(scores, rel, names, n_levels=2)
    full = rank_metrics(scores, rel, names + ["ap"], n_levels=2)
    small = rank_metrics(scores, rel, names, n_levels=2, memory_budget=3 * 50 * 24)
    for n in names:
        torch.testing.assert_close(prefix[n], full[n], equal_nan=True, atol=1e-12, rtol=0)
        torch.testing.assert_close(small[n], full[n], equal_nan=True, atol=1e-12, rtol=0)


def test_masked_relevant_item_is_an_error_naming_it():
    scores, history, test = recbole_data(seed=3)
    with pytest.raises(ValueError, match="relevant items are masked .* first at row"):
        rank_metrics(scores, test, ["recall@10"], mask=test)
    s = scores.copy()
    s[5, np.flatnonzero(test[5])[0]] = -np.inf
    with pytest.raises(ValueError, match="1 relevant items are masked .* row 5"):
        rank_metrics(s, test, ["recall@10"])


def test_graded_relevance_warns_and_level1_counts_every_rating():
    rng = np.random.default_rng(4)
    scores, ratings = rng.normal(size=(20, 30)), rng.integers(0, 6, size=(20, 30))
    with pytest.warns(UserWarning, match=r"count only level 5 .* recall@10/level1"):
        top = rank_metrics(scores, ratings, ["recall@10"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        every = rank_metrics(scores, ratings, ["recall@10/level1", "ndcg@10"])
        rank_metrics(scores, ratings, ["recall@10"], n_levels=5)  # levels stated: the user knows
    binary = rank_metrics(scores, ratings > 0, ["recall@10"])
    torch.testing.assert_close(every["recall@10/level1"], binary["recall@10"], equal_nan=True)
    torch.testing.assert_close(
        top["recall@10"], rank_metrics(scores, ratings == 5, ["recall@10"])["recall@10"], equal_nan=True
    )


@pytest.mark.parametrize(
    "bad,match",
    [
        (lambda s, r: rank_metrics(s, r, ["r@10"]), "ambiguous"),
        (lambda s, r: rank_metrics(np.where(r > 0, np.inf, s), r, ["hit@10"]), r"\+inf"),
        (lambda s, r: rank_metrics(np.where(r > 0, np.nan, s), r, ["hit@10"]), "NaN"),
        (lambda s, r: rank_metrics(s, r * 0.5, ["hit@10"]), "non-integer"),
        (lambda s, r: rank_metrics(s, -r, ["hit@10"]), ">= 0"),
        (lambda s, r: rank_metrics(s, r[:, :-1], ["hit@10"]), "shape"),
        (lambda s, r: rank_metrics(s, r, ["hit@10"], mask=r * 2), "0/1"),
        (lambda s, r: rank_metrics(s, r, ["hit@10"], reduce="sum"), "reduce"),
        (lambda s, r: rank_metrics(s, r, ["hit@10"], reduce="mean", no_positive="error"), "no relevant item"),
    ],
)
def test_bad_input_is_named(bad, match):
    rng = np.random.default_rng(5)
    s, r = rng.normal(size=(6, 20)), (rng.random((6, 20)) < 0.3).astype(np.int64)
    r[2] = 0
    with pytest.raises(ValueError, match=match):
        bad(s, r)


def test_reduce_mean_policies():
    scores, _, test = recbole_data(seed=6)
    rows = rank_metrics(scores, test, ["ndcg@10"])["ndcg@10"].numpy()
    mean = rank_metrics(scores, test, ["ndcg@10"], reduce="mean")
    zero = rank_metrics(scores, test, ["ndcg@10"], reduce="mean", no_positive="zero")
    assert mean["ndcg@10"] == pytest.approx(np.nanmean(rows), abs=1e-12)
    assert zero["ndcg@10"] == pytest.approx(np.nan_to_num(rows).sum() / len(rows), abs=1e-12)


def test_evaluate_recommender_takes_a_matrix_a_function_or_embeddings():
    g = torch.Generator().manual_seed(7)
    ue, ie = torch.randn(25, 6, generator=g), torch.randn(70, 6, generator=g)
    rng = np.random.default_rng(8)
    train = Interactions(rng.integers(0, 25, 300), rng.integers(0, 70, 300))
    test = (rng.integers(0, 25, 90), rng.integers(0, 70, 90))  # a pair of arrays
    by_emb = evaluate_recommender((ue, ie), test, train)
    by_matrix = evaluate_recommender((ue @ ie.T).numpy(), test, (train.user, train.item))
    by_function = evaluate_recommender(lambda users: ue[users] @ ie.T, test, train)
    assert set(by_emb) == set(metrics_at([10, 20, 50])) | {f"recall_norm@{k}" for k in (10, 20, 50)} | {"n_users"}
    for n, v in by_emb.items():
        assert by_matrix[n] == pytest.approx(v, abs=1e-6) and by_function[n] == pytest.approx(v, abs=1e-6), n
    small = evaluate_recommender((ue, ie[:30]), (test[0], test[1] % 30))
    assert "recall@20" in small and "recall@50" not in small  # default cut-offs within the catalogue
    assert set(evaluate_recommender((ue, ie), test, ks=[5])) == set(metrics_at([5])) | {"recall_norm@5", "n_users"}
    with pytest.raises(ValueError, match="ambiguous"):
        evaluate_recommender((ue, ie), test, metrics=["r@10"])
    with pytest.raises(ValueError, match="score function returned shape"):
        evaluate_recommender(lambda users: ue @ ie.T, test)
    with pytest.raises(ValueError, match="rows"):
        evaluate_recommender((ue @ ie.T)[:10], test)


def _small():
    g = torch.Generator().manual_seed(9)
    ue, ie = torch.randn(10, 5, generator=g), torch.randn(70, 5, generator=g)
    return ue, ie, (np.array([0, 1, 2, 9]), np.array([3, 4, 5, 6]))


@pytest.mark.parametrize(
    "call,error,match",
    [
        (
            lambda ue, ie, t: evaluate_recommender((ue, ie), (t[0], t[1][:-1])),
            ValueError,
            "test: user and item ids must be two 1-D arrays of one length",
        ),
        (
            lambda ue, ie, t: evaluate_recommender((ue, ie), {"user": t[0]}),
            TypeError,
            r"test must be Interactions or a pair of arrays \(user ids, item ids\); got dict",
        ),
        (
            lambda ue, ie, t: evaluate_recommender((ue, ie), t, (t[0], t[1][:2])),
            ValueError,
            "masked: user and item ids",
        ),
        (
            lambda ue, ie, t: evaluate_recommender((ue, ie[:, :3]), t),
            ValueError,
            r"\(users, d\) and \(items, d\); got \(10, 5\), \(70, 3\)",
        ),
        (
            lambda ue, ie, t: evaluate_recommender(lambda u: (ue @ ie.T)[:, :5].T, t),
            ValueError,
            r"for 4 users; expected \(users, items\)$",
        ),
        (lambda ue, ie, t: evaluate_recommender(np.array([["a"] * 70] * 10), t), TypeError, "scores holds strings"),
        (
            lambda ue, ie, t: evaluate_recommender((ue @ ie.T)[:9], t),
            ValueError,
            "user 9 has a test item but the score matrix has 9 rows",
        ),
        (
            lambda ue, ie, t: evaluate_recommender((ue, ie), t, metrics=["ndcg@5"], ks=[5]),
            ValueError,
            "^give metrics or ks, not both$",
        ),
        (
            lambda ue, ie, t: evaluate_recommender((ue, ie), t, users=np.array([5, 6])),
            ValueError,
            "no test user has a test item",
        ),
    ],
)
def test_evaluate_recommender_names_bad_input(call, error, match):
    ue, ie, test = _small()
    with pytest.raises(error, match=match):
        call(ue, ie, test)


def test_rank_metrics_warns_of_a_cutoff_beyond_the_row_and_at_the_callers_line():
    rng = np.random.default_rng(10)
    s, r = rng.normal(size=(4, 20)), rng.integers(0, 3, size=(4, 20))
    with pytest.warns(UserWarning, match=r"hit@21: k beyond the 20 items per row"):
        rank_metrics(s, r > 0, ["hit@21"])
    with pytest.warns(UserWarning) as caught:
        rank_metrics(s, r, ["recall@5"])
    import rankopt

    package = pathlib.Path(rankopt.__file__).parent
    assert not pathlib.Path(caught[0].filename).is_relative_to(package)  # it points at the caller, not into rankopt


def test_ranking_from_scores_defaults_to_expected_ties():
    from rankopt.metrics.ranking import ranking_from_scores

    scores = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    levels = torch.tensor([[0, 1, 0, 1]])
    counts = torch.tensor([[2, 2]])
    default = ranking_from_scores(scores, levels, counts, 1, 4)
    expected = ranking_from_scores(scores, levels, counts, 1, 4, "expected")
    assert torch.equal(default.start, expected.start) and torch.equal(default.size, expected.size)
    assert int(default.size[0, 0]) == 3  # the tied group of three, not split by a tie policy
