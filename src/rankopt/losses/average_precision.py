"""AP surrogates: SupAP (ROADMAP / SupRank) and Smooth-AP.

Per query i with positives P_i (the query itself among them with include_self=True):

    AP_i = (1/|P_i|) Σ_{k∈P_i} rank⁺(k) / rank(k),   loss = 1 − mean_i AP_i

SupAP (Ramzi et al., NeurIPS 2021): rank⁺ exact (Heaviside, H(0) = 1), rank = rank⁺ + Σ_{j∉P} H̃(s_j − s_k)
with the SupRank step. Smooth-AP (Brown et al., ECCV 2020): every step, in rank and rank⁺, is σ(t/τ).
"""

from __future__ import annotations

import torch

from rankopt.losses.base import RankingLoss, mean_over_queries
from rankopt.losses.batch import RankBatch
from rankopt.losses.steps import Sigmoid, SupRankStep

__all__ = ["SupAP", "SmoothAP"]


class SupAP(RankingLoss):
    """1 − SupAP. tau, delta, rho, start, offset: the SupRank step (offset=None: continuous value
    σ(δ/τ) + start; the ROADMAP recipes pass 1.44, iNaturalist start=0, offset=1).
    Embeddings not unit-norm are L2-normalised first (normalize=False: raw dot products)."""

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

    def per_query(self, batch: RankBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(AP_i surrogate, has a positive) per query."""
        items, lv, valid = batch.ranked_items(batch.n_levels)
        rank, plus = self.surrogate_ranks(batch, items, lv, valid, self.step)
        n_pos = valid.sum(dim=1)
        ap = (valid * plus / rank).sum(dim=1) / n_pos.clamp_min(1)
        return ap, n_pos > 0

    def compute(self, batch: RankBatch) -> torch.Tensor:
        ap, has = self.per_query(batch)
        return mean_over_queries(1 - ap, has)


class SmoothAP(RankingLoss):
    """1 − Smooth-AP: ranks counted with σ(t/τ) for every pair (tau=0.01).
    Embeddings not unit-norm are L2-normalised first (normalize=False: raw dot products)."""

    def __init__(
        self,
        tau: float = 0.01,
        include_self: bool = True,
        memory_budget: int = 64 << 20,
        bin_width: float | None = None,
        normalize: bool = True,
    ) -> None:
        super().__init__(include_self, memory_budget, bin_width, normalize)
        self.step = Sigmoid(tau)

    def compute(self, batch: RankBatch) -> torch.Tensor:
        items, lv, valid = batch.ranked_items(batch.n_levels)
        plus = 1 + self._sums(batch, items, lv, valid, self.step, "not_lower", among_items=True)
        rank = plus + self.lower_sums(batch, items, lv, valid, self.step)  # every other item: σ
        n_pos = valid.sum(dim=1)
        ap = (valid * plus / rank).sum(dim=1) / n_pos.clamp_min(1)
        return mean_over_queries(1 - ap, n_pos > 0)
