"""SupNDCG (SupRank): NDCG with gains 2^ℓ − 1 on the SupRank surrogate rank.

    DCG̃_i = Σ_{k: ℓ_k ≥ 1} (2^ℓ_k − 1) / log2(1 + rank̃(k)),   loss = 1 − mean_i DCG̃_i / IDCG_i

rank̃(k) counts items at least as relevant as k exactly and less relevant ones with the SupRank step,
so DCG̃ ≤ DCG (a lower bound of NDCG). Labels (B,) or (B, L): ℓ = shared label columns.
"""

from __future__ import annotations

import torch

from rankopt.losses.base import RankingLoss, mean_over_queries
from rankopt.losses.batch import RankBatch
from rankopt.losses.steps import SupRankStep

__all__ = ["SupNDCG", "ideal_dcg"]


def ideal_dcg(counts: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """IDCG per query from (B, L+1) counts of references at each level: gains sorted decreasing."""
    n_levels = counts.shape[1] - 1
    total = int(counts[:, 1:].sum(dim=1).max()) if counts.numel() else 0
    pos = torch.arange(1, total + 1, dtype=dtype, device=counts.device)
    cum = torch.nn.functional.pad((1 / torch.log2(pos + 1)).cumsum(0), (1, 0))
    out = torch.zeros(counts.shape[0], dtype=dtype, device=counts.device)
    higher = torch.zeros_like(counts[:, 0])
    for lvl in range(n_levels, 0, -1):
        out += (2.0**lvl - 1) * (cum[higher + counts[:, lvl]] - cum[higher])
        higher = higher + counts[:, lvl]
    return out


class SupNDCG(RankingLoss):
    hierarchical = True

    def __init__(self, tau: float = 0.01, delta: float = 0.05, rho: float = 100.0, start: float = 0.5,
                 offset: float | None = None, include_self: bool = True, memory_budget: int = 64 << 20,
                 bin_width: float | None = None) -> None:
        super().__init__(include_self, memory_budget, bin_width)
        self.step = SupRankStep(tau, delta, rho, start, offset)

    def compute(self, batch: RankBatch) -> torch.Tensor:
        items, lv, valid = batch.ranked_items(1)
        rank, _ = self.surrogate_ranks(batch, items, lv, valid, self.step)
        gains = torch.exp2(lv.to(rank.dtype)) - 1
        dcg = (valid * gains / torch.log2(1 + rank)).sum(dim=1)
        idcg = ideal_dcg(batch.level_counts(), rank.dtype)
        has = valid.any(dim=1)
        return mean_over_queries(1 - dcg / idcg.clamp_min(1e-12), has)
