"""OOD detection metrics on outlier scores (larger = more OOD), exact under ties.

Two conventions of "FPR at 95% TPR" are in use and papers rarely say which; both are given, each
named for what it measures:

- ``fpr95_id`` — ID is the positive class: the fraction of OOD samples *accepted as ID* at the
  threshold that accepts 95% of ID (HEAT's code, and most OOD papers since Liang et al. 2018);
- ``fpr95_ood`` — OOD is the positive class: the fraction of ID samples *flagged as OOD* at the
  threshold that flags 95% of OOD (OpenOOD v1.5, pytorch-ood's ``FPR95TPR``).

Both take the threshold on the ROC curve (the first point whose TPR reaches 0.95, thresholds at the
distinct scores), which is what scikit-learn's ``roc_curve`` gives; HEAT's code interpolates a
percentile of the ID scores instead, which can differ by one sample's share.
"""

from __future__ import annotations

import numpy as np

__all__ = ["auroc", "aupr", "fpr_at_tpr", "ood_metrics", "METRICS", "check_scores"]

METRICS = ("auroc", "aupr_in", "aupr_out", "fpr95_id", "fpr95_ood")


def check_scores(scores, name: str) -> np.ndarray:
    """A 1-D float array of finite scores, or a ValueError naming ``name``."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"{name} scores must be 1-D; got shape {s.shape}")
    if s.size == 0:
        raise ValueError(f"{name} scores are empty")
    bad = ~np.isfinite(s)
    if bad.any():
        raise ValueError(
            f"{name} scores has {int(bad.sum())} non-finite value(s) (first at {int(np.flatnonzero(bad)[0])})"
        )
    return s


def _positive_counts(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative (true positives, false positives) when flagging scores >= t, t over the distinct
    scores in decreasing order (one point per distinct value: tied samples move together)."""
    values = np.concatenate([pos, neg])
    is_pos = np.concatenate([np.ones(len(pos), bool), np.zeros(len(neg), bool)])
    order = np.argsort(-values, kind="stable")
    values, is_pos = values[order], is_pos[order]
    last = np.r_[values[1:] != values[:-1], True]  # the last sample of each tie group
    tp = np.cumsum(is_pos)[last]
    fp = np.cumsum(~is_pos)[last]
    return tp, fp


def auroc(pos, neg) -> float:
    """P(score of a positive > score of a negative) + ½ P(tie): the area under the ROC curve with
    the positives ranked first (Mann–Whitney U / (n_pos · n_neg))."""
    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    tp, fp = _positive_counts(pos, neg)
    tpr = np.r_[0, tp] / len(pos)
    fpr = np.r_[0, fp] / len(neg)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))  # trapezoids: a tie group is a diagonal


def aupr(pos, neg) -> float:
    """Average precision of the positives ranked by decreasing score: Σ_t (R_t − R_{t−1}) · P_t over
    the distinct thresholds (scikit-learn's ``average_precision_score``; no interpolation)."""
    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    tp, fp = _positive_counts(pos, neg)
    precision = tp / (tp + fp)
    recall = np.r_[0, tp] / len(pos)
    return float(np.sum(np.diff(recall) * precision))


def fpr_at_tpr(pos, neg, tpr: float = 0.95) -> float:
    """The false-positive rate at the first threshold (decreasing) where the TPR reaches ``tpr``."""
    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    tp, fp = _positive_counts(pos, neg)
    needed = np.ceil(tpr * len(pos) - 1e-9)  # positives to accept (1e-9: 0.95 · 20 is 19.000000000000004)
    i = int(np.argmax(tp >= needed))
    return float(fp[i] / len(neg))


def ood_metrics(id_scores, ood_scores) -> dict[str, float]:
    """AUROC (OOD positive), AUPR-In (ID positive, scores negated), AUPR-Out (OOD positive), and FPR
    at 95% TPR in both conventions (see the module docstring). Scores: larger = more OOD."""
    i = check_scores(id_scores, "ID")
    o = check_scores(ood_scores, "OOD")
    return {
        "auroc": auroc(o, i),
        "aupr_in": aupr(-i, -o),
        "aupr_out": aupr(o, i),
        "fpr95_id": fpr_at_tpr(-i, -o),
        "fpr95_ood": fpr_at_tpr(o, i),
    }
