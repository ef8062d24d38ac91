"""Binary-relevance ranking metrics, per query, exact under ties.

Each function reads a :class:`~rankopt.metrics.ranking.Ranking` and a relevance level λ (an item is
relevant when its level is >= λ; λ = L means "same finest label") and returns a (Q,) float64
tensor. R is the number of relevant items in the ranked list. Under ``ties="expected"`` the value is
the exact expectation over uniformly random orders of every tie group. A group of n items holding r
relevant ones, after B items of which A are relevant, whose first m positions count, contributes:

* relevant items expected in those m positions: r·m/n (P@k, Recall@k, R-precision);
* to AP's sum (McSherry & Najork, 2008): Σ_{i ≤ m} (r/n)·(A + 1 + (i−1)(r−1)/(n−1)) / (B+i),
  in closed form with harmonic sums (see ``harmonic_sums``);
* probability that none of its first m positions is relevant: C(n − r, m) / C(n, m) (Hit@k);
* when A = 0, probability that its first relevant item is at its i-th position:
  C(n − i, r − 1) / C(n, r) (MRR).
"""

from __future__ import annotations

import torch

from rankopt.metrics.ranking import Ranking, harmonic_sums, log_comb

__all__ = [
    "average_precision",
    "map_at_r",
    "r_precision",
    "precision_at_k",
    "recall_at_k",
    "hit_at_k",
    "reciprocal_rank",
    "map_at_k",
    "ap_at_k",
    "relevant_count",
    "expected_hits",
]


def relevant_count(ranking: Ranking, level: int) -> torch.Tensor:
    """R per query: ranked items with level >= λ. (Q,) int64."""
    return ranking.at_least(level)


def _groups(ranking: Ranking, level: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per kept item: relevant items above its group (A), in its group (r), and whether it heads it."""
    above, within = ranking.above_and_within(ranking.levels >= level)
    return above, within, ranking.heads


def _positions_within(ranking: Ranking, k: torch.Tensor) -> torch.Tensor:
    """How many positions of each group fall in the top k (k: (Q,) or (Q, 1))."""
    k = k.reshape(-1, 1)
    return torch.minimum((k - ranking.start).clamp_min(0), ranking.size)


def expected_hits(ranking: Ranking, level: int, k: torch.Tensor) -> torch.Tensor:
    """Expected relevant items in the top k (k: (Q,) int64)."""
    _, r, heads = _groups(ranking, level)
    m = _positions_within(ranking, k)
    return (heads * r * m / ranking.size).sum(dim=1)


def _ap_sum(ranking: Ranking, level: int, k: torch.Tensor) -> torch.Tensor:
    """Σ over positions p ≤ k of expected P@p · rel(p): (Q,) float64."""
    a, r, heads = _groups(ranking, level)
    n = ranking.size.to(torch.float64)
    m = _positions_within(ranking, k)
    s0, s1 = harmonic_sums(ranking.start, m)
    inside = torch.where(n > 1, (r - 1) / (n - 1).clamp_min(1), torch.zeros_like(n)) * s1
    return (heads * (r / n) * ((a + 1) * s0 + inside)).sum(dim=1)


def average_precision(ranking: Ranking, level: int) -> torch.Tensor:
    """AP = (1/R) Σ_{relevant k} P@rank(k), over the full ranked list."""
    r = relevant_count(ranking, level)
    full = torch.full_like(r, ranking.n_ranked)
    return _ap_sum(ranking, level, full) / r.clamp_min(1).to(torch.float64)


def map_at_r(ranking: Ranking, level: int) -> torch.Tensor:
    """MAP@R (Musgrave et al., 2020): (1/R) Σ_{p ≤ R} P@p · rel(p)."""
    r = relevant_count(ranking, level)
    return _ap_sum(ranking, level, r) / r.clamp_min(1).to(torch.float64)


def map_at_k(ranking: Ranking, level: int, k: int) -> torch.Tensor:
    """MAP@k as RecBole and most recommender papers define it: Σ_{p ≤ k} P@p · rel(p) / min(k, R)."""
    r = relevant_count(ranking, level).clamp(min=1, max=k).to(torch.float64)
    return _ap_sum(ranking, level, _constant(ranking, k)) / r


def ap_at_k(ranking: Ranking, level: int, k: int) -> torch.Tensor:
    """AP cut at k as trec_eval (``map_cut_k``), ranx (``map@k``) and ir-measures (``AP@k``) define it:
    Σ_{p ≤ k} P@p · rel(p) / R, R all relevant items (RecBole's MAP@K divides by min(k, R))."""
    r = relevant_count(ranking, level).clamp_min(1).to(torch.float64)
    return _ap_sum(ranking, level, _constant(ranking, k)) / r


def r_precision(ranking: Ranking, level: int) -> torch.Tensor:
    """R-precision: relevant items among the first R, divided by R."""
    r = relevant_count(ranking, level)
    return expected_hits(ranking, level, r) / r.clamp_min(1).to(torch.float64)


def _constant(ranking: Ranking, k: int) -> torch.Tensor:
    return torch.full((ranking.levels.shape[0],), k, dtype=torch.int64, device=ranking.levels.device)


def precision_at_k(ranking: Ranking, level: int, k: int) -> torch.Tensor:
    """P@k: relevant items in the top k, divided by k."""
    return expected_hits(ranking, level, _constant(ranking, k)) / k


def recall_at_k(ranking: Ranking, level: int, k: int) -> torch.Tensor:
    """Recall@k of recommender systems (torchmetrics RetrievalRecall, trec_eval): hits in top k / R."""
    r = relevant_count(ranking, level).clamp_min(1).to(torch.float64)
    return expected_hits(ranking, level, _constant(ranking, k)) / r


def hit_at_k(ranking: Ranking, level: int, k: int) -> torch.Tensor:
    """Hit@k, the "Recall@K" of metric-learning papers: 1 if any of the top k is relevant."""
    _, r, heads = _groups(ranking, level)
    start, size = ranking.start, ranking.size
    sure = (heads & (start + size <= k) & (r > 0)).any(dim=1)
    # at most one group straddles position k: take it per row, then one binomial ratio per query
    straddles = heads & (start < k) & (start + size > k) & (r > 0)
    slot = straddles.to(torch.int8).argmax(dim=1, keepdim=True)
    found = straddles.gather(1, slot).squeeze(1)
    n, b = size.gather(1, slot).squeeze(1), start.gather(1, slot).squeeze(1)
    rr = r.gather(1, slot).squeeze(1).to(torch.int64)
    log_none = log_comb(n - rr, k - b) - log_comb(n, k - b)
    maybe = torch.where(found & torch.isfinite(log_none), 1 - torch.exp(log_none), found.to(torch.float64))
    return torch.where(sure, torch.ones_like(maybe), maybe)


def reciprocal_rank(ranking: Ranking, level: int, k: int | None = None) -> torch.Tensor:
    """Reciprocal rank of the first relevant item; with ``k``, 0 when it is ranked below k (MRR@k)."""
    a, r, heads = _groups(ranking, level)
    first = heads & (a == 0) & (r > 0)  # (Q, M): at most one per row
    n = (first * ranking.size).sum(dim=1)  # (Q,)
    b = (first * ranking.start).sum(dim=1)
    rr = (first * r).sum(dim=1).to(torch.int64)
    # E[1 / (B + X)], X the place of the first of rr relevant items among n: a short sum over X
    span = max(1, int((n - rr + 1).max()))
    i = torch.arange(1, span + 1, device=n.device).unsqueeze(0)  # (1, span)
    log_w = log_comb(n.unsqueeze(1) - i, rr.unsqueeze(1) - 1) - log_comb(n, rr).unsqueeze(1)
    w = torch.where(torch.isfinite(log_w), torch.exp(log_w), torch.zeros_like(log_w))
    if k is not None:
        w = w * (b.unsqueeze(1) + i <= k)  # a first relevant item at 1-based position B + X > k counts 0
    return (w / (b.unsqueeze(1) + i).to(torch.float64)).sum(dim=1) * (rr > 0)
