"""Which queries each metric leaves out, counted per metric: a query whose finest label is absent
from the gallery but whose coarse label is present has no relevant item for ``ap`` (level L) and
some for ``ap/level1``."""

import numpy as np
import pytest

from rankopt.metrics import evaluate


def data():
    rng = np.random.default_rng(0)
    labels = np.array([[0, 0], [0, 0], [1, 0], [2, 1], [2, 1], [3, 1], [4, 2]])  # 1 and 3: alone at the fine level
    emb = rng.normal(size=(len(labels), 4))
    return emb, labels


def test_each_metric_counts_the_queries_it_left_out():
    emb, labels = data()
    out = evaluate(emb, labels, metrics=["ap", "ap/level1"])
    # fine: queries 2 (label 1), 5 (label 3), 6 (label 4) have no same-label item; coarse: only 6 (super 2)
    assert out["n_excluded"] == 3
    assert "n_excluded/ap" not in out and out["n_excluded/ap/level1"] == 1
    assert out["n_queries"] == 7


def test_the_mean_is_over_the_queries_with_a_relevant_item():
    emb, labels = data()
    out = evaluate(emb, labels, metrics=["ap", "ap/level1"], no_positive="zero")
    kept = evaluate(emb, labels, metrics=["ap", "ap/level1"])
    # zero-scoring the left-out queries: the same sum over all 7 queries
    assert out["ap"] == pytest.approx(kept["ap"] * 4 / 7, abs=1e-12)
    assert out["ap/level1"] == pytest.approx(kept["ap/level1"] * 6 / 7, abs=1e-12)
    assert out["n_excluded"] == 0
