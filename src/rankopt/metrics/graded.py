"""NDCG with graded relevance from the hierarchy, exact under ties.

    DCG@k = Σ_{p ≤ k} (2^ℓ_p − 1) / log2(1 + p),   NDCG@k = DCG@k / IDCG@k

ℓ_p is the level of the item at position p (number of label columns shared with the query), so
flat labels give gains 0/1. This is the exponential gain of HAPPIER / SupRank (and ranx's
``ndcg_burges``); ``gain="linear"`` uses ℓ_p itself, as trec_eval (``ndcg``, ``ndcg_cut``), ranx
(``ndcg``), ir-measures, scikit-learn and torchmetrics do — the metric names ``ndcg_lin`` and
``ndcg_lin@k`` (the same number on binary labels). Under ``ties="expected"`` each
position of a tie group gets the group's mean gain, which is the expectation over random orders
(the tie-averaged DCG of McSherry & Najork, 2008, as in scikit-learn).
"""

from __future__ import annotations

import torch

from rankopt.metrics.ranking import Ranking

__all__ = ["ndcg", "ideal_dcg", "cumulative_discount"]


def cumulative_discount(n: int, device: torch.device, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """D[x] = Σ_{p=1..x} 1/log2(1+p), D[0] = 0: (n+1,)."""
    p = torch.arange(1, n + 1, dtype=dtype, device=device)
    return torch.nn.functional.pad((1 / torch.log2(p + 1)).cumsum(0), (1, 0))


def _gain(levels, gain: str):
    if gain == "exponential":
        return 2.0**levels - 1
    if gain == "linear":
        return levels
    raise ValueError(f"gain={gain!r} is not exponential or linear")


def ideal_dcg(
    counts: torch.Tensor,
    depth: int | torch.Tensor | None = None,
    dtype: torch.dtype = torch.float64,
    gain: str = "exponential",
) -> torch.Tensor:
    """IDCG per query from (Q, L+1) counts of items at each level: the gains 2^ℓ − 1 sorted by
    decreasing level, the first ``depth`` positions (None: all; an int or a (Q,) tensor). The one
    ideal-DCG of rankopt: NDCG metrics, the SupNDCG loss and ITEM's smooth NDCG."""
    n_levels = counts.shape[1] - 1
    total = int(counts[:, 1:].sum(dim=1).max()) if counts.numel() else 0
    cum = cumulative_discount(total, counts.device, dtype)
    limit = total if depth is None else depth
    out = torch.zeros(counts.shape[0], dtype=dtype, device=counts.device)
    higher = torch.zeros_like(counts[:, 0])
    for lvl in range(n_levels, 0, -1):
        first = torch.clamp(higher, max=limit)
        last = torch.clamp(higher + counts[:, lvl], max=limit)
        out += _gain(lvl, gain) * (cum[last] - cum[first])
        higher = higher + counts[:, lvl]
    return out


def ndcg(ranking: Ranking, k: int | None = None, gain: str = "exponential") -> torch.Tensor:
    """NDCG@k per query (k=None: the whole list; k beyond the list reads it whole). (Q,) float64; 0 where
    no item has a gain."""
    depth = ranking.n_ranked if k is None else min(k, ranking.n_ranked)
    device = ranking.levels.device
    cum_d = cumulative_discount(ranking.n_ranked, device)
    _, group_gain = ranking.above_and_within(_gain(ranking.levels.to(torch.float64), gain))
    first = ranking.start.clamp(max=depth)
    last = (ranking.start + ranking.size).clamp(max=depth)
    dcg = (ranking.heads * group_gain / ranking.size * (cum_d[last] - cum_d[first])).sum(dim=1)
    idcg = ideal_dcg(ranking.counts, depth, gain=gain)
    return torch.where(idcg > 0, dcg / idcg.clamp_min(1e-300), torch.zeros_like(dcg))
