"""Calibration loss of ROADMAP (the "decomposability" term): a contrastive loss on similarities.

    L = mean over positive pairs with s < β⁺ of (β⁺ − s) + mean over negative pairs with s > β⁻ of (s − β⁻)

each mean taken over its non-zero terms only (pytorch-metric-learning's AvgNonZeroReducer), an empty
part counting 0. β⁺ = 0.9, β⁻ = 0.6. In-batch the (i, i) pairs are left out; with a reference set
every (batch, reference) pair counts.
"""

from __future__ import annotations

import torch

from rankopt.losses.base import RankingLoss
from rankopt.losses.batch import RankBatch

__all__ = ["Calibration"]


def _mean_nonzero(x: torch.Tensor) -> torch.Tensor:
    nonzero = x > 0
    return x.sum() / nonzero.sum().clamp_min(1)


class Calibration(RankingLoss):
    """Hinge terms on positive and negative similarities. Embeddings not unit-norm are L2-normalised first
    (normalize=False: raw dot products)."""

    def __init__(self, pos_margin: float = 0.9, neg_margin: float = 0.6, normalize: bool = True) -> None:
        super().__init__(
            include_self=False, normalize=normalize
        )  # hinge terms on the scores: no rank kernel, no memory budget
        self.pos_margin = pos_margin
        self.neg_margin = neg_margin

    def compute(self, batch: RankBatch) -> torch.Tensor:
        ranked = batch.levels >= 0
        pos = (batch.levels >= batch.n_levels) & ranked
        neg = (batch.levels < batch.n_levels) & ranked
        s = batch.scores
        pos_term = (self.pos_margin - s).clamp_min(0) * pos
        neg_term = (s - self.neg_margin).clamp_min(0) * neg
        return _mean_nonzero(pos_term) + _mean_nonzero(neg_term)
