"""Binary-relevance ranking metrics, per query, exact under ties.

Each function reads a :class:`~rankopt.metrics.ranking.Ranking` and a relevance level λ (an item is
relevant when its level is >= λ; λ = L means "same finest label") and returns a (Q,) float64
tensor. R is the number of relevant items in the ranked list. Under ``ties="expected"`` the value is
the exact expectation over uniformly random orders of every tie group; a group of n items holding r
relevant ones, preceded by B items of which A are relevant, gives:

* expected relevant items at each position of the group: r / n (so P@k, Recall@k, R-precision);
* AP summand at the group's i-th position p = B + i (McSherry & Najork, 2008):
  (r / n) · (A + 1 + (i − 1)(r − 1)/(n − 1)) / p;
* probability that none of its first m positions is relevant: C(n − r, m) / C(n, m) (Hit@k);
* probability that the first relevant item sits at its i-th position, when A = 0:
  C(n − i, r − 1) / C(n, r) (MRR).
"""

from __future__ import annotations

import torch

from rankopt.metrics.ranking import Ranking

__all__ = [
    "average_precision",
    "map_at_r",
    "r_precision",
    "precision_at_k",
    "recall_at_k",
    "hit_at_k",
    "reciprocal_rank",
    "relevant_count",
]


def _log_comb(n: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """log C(n, k) in float64; -inf where k < 0 or k > n."""
    n, k = n.to(torch.float64), k.to(torch.float64)
    valid = (k >= 0) & (k <= n)
    nn, kk = n.clamp_min(0), k.clamp(min=0)
    kk = torch.minimum(kk, nn)
    out = torch.lgamma(nn + 1) - torch.lgamma(kk + 1) - torch.lgamma(nn - kk + 1)
    return torch.where(valid, out, torch.full_like(out, float("-inf")))


def relevant_count(ranking: Ranking, level: int) -> torch.Tensor:
    """R per query: ranked items with level >= λ. (Q,) int64."""
    return ranking.at_least(level)


def _cumulative_hits(ranking: Ranking, level: int) -> torch.Tensor:
    """Expected number of relevant items within the first p+1 positions: (Q, K) float64."""
    return ranking.expected(ranking.levels >= level).cumsum(dim=1)


def _hits_within(ranking: Ranking, level: int, k: torch.Tensor) -> torch.Tensor:
    """Expected relevant items in the top k (k: (Q,) int64 >= 1)."""
    return _cumulative_hits(ranking, level).gather(1, (k - 1).clamp_min(0).unsqueeze(1)).squeeze(1)


def _ap_terms(ranking: Ranking, level: int) -> torch.Tensor:
    """Expected precision-at-position times relevance, at each position: (Q, K) float64."""
    rel = ranking.levels >= level
    above, within = ranking.above_and_within(rel)
    n = ranking.size.to(torch.float64)
    i = (ranking.positions - ranking.start).to(torch.float64)  # 0-based place inside the group
    inside = torch.where(n > 1, i * (within - 1) / (n - 1).clamp_min(1), torch.zeros_like(n))
    p = ranking.positions.to(torch.float64) + 1
    return (within / n) * (above + 1 + inside) / p


def average_precision(ranking: Ranking, level: int) -> torch.Tensor:
    """AP = (1/R) Σ_{relevant k} P@rank(k), over the full ranked list (needs the whole list)."""
    r = relevant_count(ranking, level).to(torch.float64)
    return _ap_terms(ranking, level).sum(dim=1) / r.clamp_min(1)


def map_at_r(ranking: Ranking, level: int) -> torch.Tensor:
    """MAP@R (Musgrave et al., 2020): (1/R) Σ_{p ≤ R} P@p · rel(p)."""
    r = relevant_count(ranking, level)
    terms = _ap_terms(ranking, level)
    keep = ranking.positions < r.unsqueeze(1)
    return (terms * keep).sum(dim=1) / r.clamp_min(1).to(torch.float64)


def r_precision(ranking: Ranking, level: int) -> torch.Tensor:
    """R-precision: relevant items among the first R, divided by R."""
    r = relevant_count(ranking, level)
    return _hits_within(ranking, level, r.clamp_min(1)) / r.clamp_min(1).to(torch.float64)


def precision_at_k(ranking: Ranking, level: int, k: int) -> torch.Tensor:
    """P@k: relevant items in the top k, divided by k."""
    kk = torch.full((ranking.levels.shape[0],), k, dtype=torch.int64, device=ranking.levels.device)
    return _hits_within(ranking, level, kk) / k


def recall_at_k(ranking: Ranking, level: int, k: int) -> torch.Tensor:
    """Recall@k of recommender systems (torchmetrics RetrievalRecall, trec_eval): hits in top k / R."""
    kk = torch.full((ranking.levels.shape[0],), k, dtype=torch.int64, device=ranking.levels.device)
    r = relevant_count(ranking, level).clamp_min(1).to(torch.float64)
    return _hits_within(ranking, level, kk) / r


def hit_at_k(ranking: Ranking, level: int, k: int) -> torch.Tensor:
    """Hit@k, the "Recall@K" of metric-learning papers: 1 if any of the top k is relevant."""
    rel = ranking.levels >= level
    above, within = ranking.above_and_within(rel)
    j = k - 1
    start, n = ranking.start[:, j], ranking.size[:, j]
    a, r = above[:, j], within[:, j]
    m = k - start  # positions of the boundary group inside the top k
    log_none = _log_comb(n - r.to(torch.int64), m) - _log_comb(n, m)
    none = torch.where(torch.isfinite(log_none), torch.exp(log_none), torch.zeros_like(log_none))
    return torch.where(a > 0, torch.ones_like(none), 1 - none)


def reciprocal_rank(ranking: Ranking, level: int) -> torch.Tensor:
    """Reciprocal rank of the first relevant item (needs the whole list)."""
    rel = ranking.levels >= level
    above, within = ranking.above_and_within(rel)
    first_group = (above == 0) & (within > 0)
    n = ranking.size
    i = ranking.positions - ranking.start + 1  # 1-based place inside the group
    r = within.to(torch.int64)
    log_w = _log_comb(n - i, r - 1) - _log_comb(n, r)
    w = torch.where(first_group & torch.isfinite(log_w), torch.exp(log_w), torch.zeros_like(log_w))
    return (w / (ranking.positions + 1).to(torch.float64)).sum(dim=1)
