"""OOD metrics against scikit-learn, with ties, and the two FPR95 conventions on a hand-made case."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from rankopt.ood.metrics import ood_metrics


def _sklearn_fpr(y, s):
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return fpr[np.argmax(tpr >= 0.95)]


@pytest.mark.parametrize("seed", range(40))
def test_equal_to_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    n, m = rng.integers(1, 60, 2)
    id_s = rng.integers(0, 6, n).astype(float)  # few distinct values: ties everywhere
    ood_s = rng.integers(1, 9, m).astype(float)
    got = ood_metrics(id_s, ood_s)
    y = np.r_[np.zeros(n), np.ones(m)]  # OOD = 1
    s = np.r_[id_s, ood_s]
    assert got["auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert got["aupr_out"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert got["aupr_in"] == pytest.approx(average_precision_score(1 - y, -s), abs=1e-12)
    assert got["fpr95_ood"] == pytest.approx(_sklearn_fpr(y, s), abs=1e-12)
    assert got["fpr95_id"] == pytest.approx(_sklearn_fpr(1 - y, -s), abs=1e-12)


def test_the_two_fpr95_conventions_differ_as_defined():
    # 20 ID scores 0..19, 20 OOD scores 15..34 (larger = more OOD)
    id_s, ood_s = np.arange(20.0), np.arange(15.0, 35.0)
    got = ood_metrics(id_s, ood_s)
    # accepting 95% of ID (19 of 20) means accepting scores <= 18: OOD 15, 16, 17, 18 are accepted → 4/20
    assert got["fpr95_id"] == pytest.approx(4 / 20)
    # flagging 95% of OOD (19 of 20) means flagging scores >= 16: ID 16..19 are flagged → 4/20
    assert got["fpr95_ood"] == pytest.approx(4 / 20)
    # shift the OOD scores: the conventions now disagree
    got = ood_metrics(id_s, np.r_[np.arange(17.0, 36.0), -1.0])
    assert got["fpr95_id"] == pytest.approx(3 / 20)  # OOD -1, 17, 18 accepted at threshold 18
    assert got["fpr95_ood"] == pytest.approx(3 / 20)  # flag >= 17 (19 of 20 OOD): ID 17, 18, 19
    # 10% of the OOD set looks more ID than any ID sample: harmless for one convention, fatal for the other
    got = ood_metrics(np.zeros(20), np.r_[np.full(18, 5.0), -5.0, -5.0])
    assert got["fpr95_id"] == pytest.approx(2 / 20)  # accept <= 0 (all ID): the two -5 OOD pass
    assert got["fpr95_ood"] == 1.0  # flagging 19 of 20 OOD needs the threshold at -5: every ID is flagged


def test_perfect_and_reversed_separation():
    assert ood_metrics([0, 1, 2], [5, 6])["auroc"] == 1.0
    assert ood_metrics([0, 1, 2], [5, 6])["fpr95_id"] == 0.0
    assert ood_metrics([5, 6], [0, 1, 2])["auroc"] == 0.0
    assert ood_metrics([1, 1], [1, 1])["auroc"] == 0.5  # all tied: chance


@pytest.mark.parametrize("bad, message", [([np.nan, 1], "non-finite"), ([], "empty"), ([[1, 2]], "1-D")])
def test_bad_scores(bad, message):
    with pytest.raises(ValueError, match=message):
        ood_metrics(bad, [1.0])
