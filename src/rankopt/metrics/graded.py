"""NDCG with graded relevance from the hierarchy, exact under ties.

    DCG@k = Σ_{p ≤ k} (2^ℓ_p − 1) / log2(1 + p),   NDCG@k = DCG@k / IDCG@k

ℓ_p is the level of the item at position p (number of label columns shared with the query), so
flat labels give gains 0/1. This is the exponential gain of HAPPIER / SupRank; scikit-learn and
torchmetrics use linear gains (the same number on binary labels). Under ``ties="expected"`` each
position of a tie group gets the group's mean gain, which is the expectation over random orders
(the tie-averaged DCG of McSherry & Najork, 2008, as in scikit-learn).
"""

from __future__ import annotations

import torch

from rankopt.metrics.ranking import Ranking

__all__ = ["ndcg"]


def _cumulative_discount(n: int, device: torch.device) -> torch.Tensor:
    """D[x] = Σ_{p=1..x} 1/log2(1+p), D[0] = 0: (n+1,) float64."""
    p = torch.arange(1, n + 1, dtype=torch.float64, device=device)
    return torch.nn.functional.pad((1 / torch.log2(p + 1)).cumsum(0), (1, 0))


def ndcg(ranking: Ranking, k: int | None = None) -> torch.Tensor:
    """NDCG@k per query (k=None: the whole list). (Q,) float64; 0 where no item has a gain."""
    depth = ranking.n_ranked if k is None else k
    device = ranking.levels.device
    cum_d = _cumulative_discount(ranking.n_ranked, device)
    _, group_gain = ranking.above_and_within(torch.exp2(ranking.levels.to(torch.float64)) - 1)
    first = ranking.start.clamp(max=depth)
    last = (ranking.start + ranking.size).clamp(max=depth)
    dcg = (ranking.heads * group_gain / ranking.size * (cum_d[last] - cum_d[first])).sum(dim=1)
    # ideal DCG: the gains sorted by decreasing level, from the per-level counts
    counts = ranking.counts
    idcg = torch.zeros_like(dcg)
    higher = torch.zeros_like(counts[:, 0])
    for lvl in range(ranking.n_levels, 0, -1):
        first = higher.clamp(max=depth)
        last = (higher + counts[:, lvl]).clamp(max=depth)
        idcg += (2.0**lvl - 1) * (cum_d[last] - cum_d[first])
        higher = higher + counts[:, lvl]
    return torch.where(idcg > 0, dcg / idcg.clamp_min(1e-300), torch.zeros_like(dcg))
