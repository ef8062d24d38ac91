"""HAP: the H-AP surrogate of HAPPIER (Ramzi et al., ECCV 2022).

With "pop" relevance rel(k) = (ℓ_k / L)^α / n_ℓ, n_ℓ counted over the reference set; in-batch the
query itself is counted once at level L whether or not it is ranked (include_self), so with exact
steps and include_self=False HAP equals the H-AP metric of ``rankopt.metrics``:

    rank̃(k)   = 1 + Σ_{j≠k, ℓ_j ≥ ℓ_k} H(s_j − s_k) + Σ_{ℓ_j < ℓ_k} H̃(s_j − s_k)
    H-rank(k) = rel(k) + Σ_{j≠k, ℓ_j ≥ 1} min(rel(j), rel(k)) · H(s_j − s_k)
    H-AP̃      = Σ_{ℓ_k ≥ 1} H-rank(k) / rank̃(k)  /  Σ_k rel(k),     loss = 1 − mean_i H-AP̃_i

Only the denominator is smoothed, so H-AP̃ ≤ H-AP. ``smooth_hrank=True`` replaces H by HAPPIER's
smooth step for more relevant j in the H-rank (leak 10, β 25, γ 0.5). On flat labels HAP = SupAP.
"""

from __future__ import annotations

import torch

from rankopt.losses.base import RankingLoss, mean_over_queries
from rankopt.losses.batch import RankBatch
from rankopt.losses.rank_kernel import items_above_by_level
from rankopt.losses.steps import Heaviside, SmoothHRankStep, SupRankStep
from rankopt.relevance import pop_relevance

__all__ = ["HAP"]


class HAP(RankingLoss):
    """1 − the H-AP surrogate on (B, L) labels. Embeddings not unit-norm are L2-normalised first
    (normalize=False: raw dot products)."""

    hierarchical = True

    def __init__(
        self,
        tau: float = 0.01,
        delta: float = 0.05,
        rho: float = 100.0,
        start: float = 0.5,
        offset: float | None = None,
        alpha: float = 1.0,
        smooth_hrank: bool = False,
        hrank_step: SmoothHRankStep | None = None,
        include_self: bool = True,
        memory_budget: int = 64 << 20,
        bin_width: float | None = None,
        normalize: bool = True,
    ) -> None:
        super().__init__(include_self, memory_budget, bin_width, normalize)
        self.step = SupRankStep(tau, delta, rho, start, offset)
        self.alpha = alpha
        self.smooth_hrank = smooth_hrank
        if hrank_step is not None and not smooth_hrank:
            raise ValueError("HAP: hrank_step shapes the smoothed H-rank; it needs smooth_hrank=True")
        self.hrank_step = hrank_step or SmoothHRankStep()

    def compute(self, batch: RankBatch) -> torch.Tensor:
        items, lv, valid = batch.ranked_items(1)
        rank, _ = self.surrogate_ranks(batch, items, lv, valid, self.step)
        rel = pop_relevance(batch.level_counts(), self.alpha, include_query=batch.self_excluded).to(rank.dtype)
        rel_k = rel.gather(1, lv.clamp_min(0)) * valid
        if self.smooth_hrank:
            h = self._sums(batch, items, lv, valid, self.hrank_step, "higher", among_items=True, weights=rel)
            h = h + self._sums(batch, items, lv, valid, Heaviside(), "not_higher", among_items=True, weights=rel)
        else:  # exact H-rank: per-level counts of items scoring at least as high, O(P log P)
            above = items_above_by_level(batch.scores, items, lv, valid, batch.n_levels)  # (B, P, L+1)
            h = (torch.minimum(rel.unsqueeze(1), rel_k.unsqueeze(-1)) * above).sum(dim=-1)
        hrank = rel_k + h
        mass = rel_k.sum(dim=1)
        hap = (valid * hrank / rank).sum(dim=1) / mass.clamp_min(1e-30)
        return mean_over_queries(1 - hap, mass > 0)
