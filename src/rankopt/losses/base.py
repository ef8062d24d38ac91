"""The one call signature of every rankopt loss, and the shared machinery of the rank losses."""

from __future__ import annotations

import torch
from torch import nn

from rankopt.losses.batch import RankBatch, prepare_batch
from rankopt.losses.rank_kernel import pair_sums
from rankopt.losses.steps import Heaviside, Step

__all__ = ["RankingLoss", "mean_over_queries"]


class RankingLoss(nn.Module):
    """Base of the losses: ``loss(embeddings, labels, ref_embeddings=None, ref_labels=None) -> scalar``.

    Embeddings are L2-normalised by the model; similarities are dot products. With no reference set
    the batch is its own reference and, as in the original code, each query is its own positive at
    rank 1 (``include_self=True``). Queries without any positive in the reference set are left out
    of the mean (never NaN); a batch where no query has one gives a zero loss that keeps the graph.
    """

    hierarchical = False  # whether (B, L) labels with L > 1 are accepted

    def __init__(self, include_self: bool = True, memory_budget: int = 256 << 20) -> None:
        super().__init__()
        self.include_self = include_self
        self.memory_budget = memory_budget

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref_embeddings: torch.Tensor | None = None,
        ref_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        batch = prepare_batch(
            embeddings, labels, ref_embeddings, ref_labels, name=type(self).__name__,
            hierarchical=self.hierarchical, include_self=self.include_self,
        )
        return self.compute(batch)

    def compute(self, batch: RankBatch) -> torch.Tensor:
        raise NotImplementedError

    # shared pieces -------------------------------------------------------------------------------
    def _sums(self, batch: RankBatch, items, item_levels, valid, step: Step, selector: str, among_items: bool, weights=None):
        """pair_sums over the references (among_items=False) or over the ranked items only."""
        if among_items:
            return pair_sums(
                batch.scores, items, item_levels, valid, step, selector,
                cand_levels=torch.where(valid, item_levels, torch.full_like(item_levels, -1)),
                cand_index=items, weights=weights, memory_budget=self.memory_budget,
            )
        return pair_sums(
            batch.scores, items, item_levels, valid, step, selector,
            cand_levels=batch.levels, weights=weights, memory_budget=self.memory_budget,
        )

    def surrogate_ranks(self, batch: RankBatch, items, item_levels, valid, step: Step) -> tuple[torch.Tensor, torch.Tensor]:
        """(rank̃, exact rank among items at least as relevant), both (B, P).

        rank̃(k) = 1 + Σ_{ℓ_j ≥ ℓ_k} H(s_j − s_k) + Σ_{ℓ_j < ℓ_k} step(s_j − s_k): the exact step for
        items at least as relevant as k (they are all ranked items), the surrogate for the others.
        """
        plus = 1 + self._sums(batch, items, item_levels, valid, Heaviside(), "not_lower", among_items=True)
        return plus + self._sums(batch, items, item_levels, valid, step, "lower", among_items=False), plus


def mean_over_queries(per_query: torch.Tensor, has_item: torch.Tensor) -> torch.Tensor:
    """Mean over the queries that have a positive; 0 (with the graph kept) when none does."""
    if bool(has_item.any()):
        return per_query[has_item].mean()
    return per_query.sum() * 0.0
