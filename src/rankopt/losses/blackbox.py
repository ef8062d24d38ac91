"""BlackBox-AP (Rolínek et al., CVPR 2020; Pogančić et al., ICLR 2020): exact ranks, blackbox gradient.

Scores are first perturbed by −margin·|ε|·(y − ½), ε ~ N(0, 1) (positives lowered, negatives raised).
rank(s) is the exact rank by a double argsort, divided by the number M of ranked items (as the
original TrueRanker); its backward is the blackbox-differentiation rule

    ∇_s = −(rank(s) − rank(s + λ·∇_rank)) / λ,

rank⁺ is the exact rank among positives (no gradient), AP = Σ_{k∈P} rank⁺/rank / (|P| + 1e−5) and
loss = 1 − mean_i AP_i over queries with positives. The query is its own positive in-batch.
"""

from __future__ import annotations

import torch

from rankopt.losses.base import RankingLoss, mean_over_queries
from rankopt.losses.batch import RankBatch

__all__ = ["BlackBoxAP"]


def _ranks(scores: torch.Tensor, n_ranked: torch.Tensor) -> torch.Tensor:
    """Rank of each entry of each row by decreasing score (double argsort), 1-based, divided by the
    number of ranked entries of the row (n_ranked: (B, 1))."""
    order = torch.argsort(scores, dim=1, descending=True, stable=True)
    return (torch.argsort(order, dim=1).to(scores.dtype) + 1) / n_ranked


class _BlackBoxRank(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores, n_ranked, lambda_):
        ranks = _ranks(scores, n_ranked)
        ctx.save_for_backward(scores, ranks, n_ranked)
        ctx.lambda_ = lambda_
        return ranks

    @staticmethod
    def backward(ctx, grad):
        scores, ranks, n_ranked = ctx.saved_tensors
        perturbed = _ranks(scores + ctx.lambda_ * grad, n_ranked)
        return -(ranks - perturbed) / ctx.lambda_, None, None


class BlackBoxAP(RankingLoss):
    """1 − AP of exact ranks with the blackbox gradient (λ = lambda_, margin on negatives).
    Embeddings not unit-norm are L2-normalised first (normalize=False: raw dot products)."""

    def __init__(
        self, lambda_: float = 4.0, margin: float = 0.02, include_self: bool = True, normalize: bool = True
    ) -> None:
        super().__init__(
            include_self, normalize=normalize
        )  # ranks by a sort of (B, N) scores: no rank kernel, no memory budget
        self.lambda_ = lambda_
        self.margin = margin

    def compute(self, batch: RankBatch) -> torch.Tensor:
        ranked = batch.levels >= 0
        pos = (batch.levels >= batch.n_levels) & ranked
        s = batch.scores
        if self.margin > 0:  # as the original, in train and eval mode alike
            noise = torch.randn_like(s).abs()
            s = s - self.margin * noise * (pos.to(s.dtype) - 0.5)
        s = torch.where(ranked, s, torch.full_like(s, -1e4))  # ignored entries rank last
        n_ranked = ranked.sum(dim=1, keepdim=True).clamp_min(1).to(s.dtype)
        rank = _BlackBoxRank.apply(s, n_ranked, self.lambda_)
        with torch.no_grad():
            plus = _ranks(torch.where(pos, -rank, torch.full_like(rank, -1e9)), n_ranked)
        n_pos = pos.sum(dim=1)
        ap = (pos * plus / rank).sum(dim=1) / (n_pos + 1e-5)
        return mean_over_queries(1 - ap, n_pos > 0)
