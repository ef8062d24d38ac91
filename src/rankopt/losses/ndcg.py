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
from rankopt.metrics.graded import ideal_dcg

__all__ = ["SupNDCG", "ideal_dcg"]


class SupNDCG(RankingLoss):
    """1 − SupNDCG on (B, L) labels. Embeddings not unit-norm are L2-normalised first (normalize=False: raw dot
    products)."""

    hierarchical = True

    def __init__(
        self,
        tau: float = 0.01,
        delta: float = 0.05,
        rho: float = 100.0,
        start: float = 0.5,
        offset: float | None = None,
        include_self: bool = True,
        memory_budget: int = 64 << 20,
        bin_width: float | None = None,
        normalize: bool = True,
    ) -> None:
        super().__init__(include_self, memory_budget, bin_width, normalize)
        self.step = SupRankStep(tau, delta, rho, start, offset)

    def compute(self, batch: RankBatch) -> torch.Tensor:
        items, lv, valid = batch.ranked_items(1)
        rank, _ = self.surrogate_ranks(batch, items, lv, valid, self.step)
        gains = torch.exp2(lv.to(rank.dtype)) - 1
        dcg = (valid * gains / torch.log2(1 + rank)).sum(dim=1)
        idcg = ideal_dcg(batch.level_counts(), dtype=rank.dtype)
        has = valid.any(dim=1)
        return mean_over_queries(1 - dcg / idcg.clamp_min(1e-12), has)
