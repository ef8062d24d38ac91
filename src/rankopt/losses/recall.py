"""SupRecall@k (SupRank, Ramzi et al., TPAMI): a smooth Recall@k on the SupRank surrogate rank.

    R̃@k_i = (1/min(|P_i|, k)) Σ_{j∈P_i} σ((k − rank̃_i(j)) / T),   loss = 1 − mean_i mean_{k∈K} R̃@k_i

K = (1, 2, 4, 8, 16) and T = 1 by default; rank̃ is SupAP's (exact among positives, SupRank step for
negatives). Unlike the original code, queries may have different numbers of positives.
"""

from __future__ import annotations

import torch

from rankopt.losses.base import RankingLoss, mean_over_queries
from rankopt.losses.batch import RankBatch
from rankopt.losses.steps import SupRankStep

__all__ = ["SupRecall"]


class SupRecall(RankingLoss):
    """1 − smooth Recall@k averaged over k. Embeddings not unit-norm are L2-normalised first (normalize=False:
    raw dot products)."""

    def __init__(
        self,
        k: tuple[int, ...] = (1, 2, 4, 8, 16),
        temperature: float = 1.0,
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
        if not k or any(int(x) < 1 for x in k):
            raise ValueError(f"SupRecall: k must be positive integers; got {k}")
        self.k = tuple(int(x) for x in k)
        self.temperature = temperature
        self.step = SupRankStep(tau, delta, rho, start, offset)

    def compute(self, batch: RankBatch) -> torch.Tensor:
        items, lv, valid = batch.ranked_items(batch.n_levels)
        rank, _ = self.surrogate_ranks(batch, items, lv, valid, self.step)
        n_pos = valid.sum(dim=1)
        recalls = []
        for k in self.k:
            hits = (valid * torch.sigmoid((k - rank) / self.temperature)).sum(dim=1)
            recalls.append(hits / n_pos.clamp(min=1, max=k))
        return mean_over_queries(1 - torch.stack(recalls).mean(dim=0), n_pos > 0)
