"""The one call signature of every rankopt loss, and the shared machinery of the rank losses."""

from __future__ import annotations

import torch
from torch import nn

from rankopt.losses.batch import RankBatch, prepare_batch
from rankopt.losses.binned_kernel import binned_lower_sums
from rankopt.losses.rank_kernel import items_above_by_level, pair_sums
from rankopt.losses.steps import Step

__all__ = ["Loss", "RankingLoss", "mean_over_queries"]


class Loss(nn.Module):
    """The call every rankopt loss answers, and what it declares about itself.

    Call: ``loss(embeddings, labels, ref_embeddings=None, ref_labels=None)``, or pytorch-metric-learning's
    ``loss(embeddings, labels, indices_tuple=None, ref_emb=None, ref_labels=None)`` (positional or by
    name): ``ref_emb`` is ``ref_embeddings``; an ``indices_tuple`` (a miner's output) is refused, since a
    rank loss ranks every reference for every query. Subclasses implement :meth:`compute_loss`.

    Declared, read by the trainer instead of guessed: ``hierarchical`` (accepts (B, L) labels with
    L > 1), ``needs_classes`` (built with the number of training classes and the embedding dimension:
    class proxies), and its ``proxy_parameters()`` (their own optimizer group)."""

    hierarchical = False
    needs_classes = False

    def forward(
        self,
        embeddings,
        labels,
        *positional,
        ref_embeddings=None,
        ref_labels=None,
        ref_emb=None,
        indices_tuple=None,
        **extra,
    ) -> torch.Tensor:
        ref, ref_lab = _reference_set(
            type(self).__name__, positional, ref_embeddings, ref_labels, ref_emb, indices_tuple
        )
        return self.compute_loss(embeddings, labels, ref, ref_lab, **extra)

    def compute_loss(self, embeddings, labels, ref_embeddings, ref_labels) -> torch.Tensor:
        raise NotImplementedError

    def proxy_parameters(self) -> list[nn.Parameter]:
        return []


def _reference_set(name, positional, ref_embeddings, ref_labels, ref_emb, indices_tuple):
    """(ref_embeddings, ref_labels) from either call convention. After (embeddings, labels), a tensor
    in third place starts rankopt's (ref_embeddings, ref_labels); None or a tuple there is PML's
    (indices_tuple, ref_emb, ref_labels)."""
    if len(positional) > 3:
        raise TypeError(f"{name}: too many positional arguments ({2 + len(positional)})")
    if positional:
        if isinstance(positional[0], torch.Tensor):
            if len(positional) > 2:
                raise TypeError(f"{name}: after ref_embeddings and ref_labels no positional argument is taken")
            pos_ref, pos_lab, pos_indices = positional[0], positional[1] if len(positional) > 1 else None, None
        elif positional[0] is None and len(positional) <= 2:  # rankopt's (None, None)
            pos_ref, pos_lab, pos_indices = None, positional[1] if len(positional) > 1 else None, None
        else:  # PML's (indices_tuple, ref_emb, ref_labels)
            pos_indices = positional[0]
            pos_ref = positional[1] if len(positional) > 1 else None
            pos_lab = positional[2] if len(positional) > 2 else None
        if (
            (pos_ref is not None and (ref_embeddings is not None or ref_emb is not None))
            or (pos_lab is not None and ref_labels is not None)
            or (pos_indices is not None and indices_tuple is not None)
        ):
            raise TypeError(f"{name}: a reference argument was given both by position and by name")
        ref_embeddings = pos_ref if pos_ref is not None else ref_embeddings
        ref_labels = pos_lab if pos_lab is not None else ref_labels
        indices_tuple = pos_indices if pos_indices is not None else indices_tuple
    if indices_tuple is not None:
        raise ValueError(
            f"{name} ranks every reference for every query, so it takes no miner output (indices_tuple): "
            "call it without the miner; to rank against a memory of past batches use "
            "rankopt.losses.CrossBatchMemory"
        )
    if ref_emb is not None:
        if ref_embeddings is not None:
            raise TypeError(f"{name}: give ref_embeddings or its alias ref_emb, not both")
        ref_embeddings = ref_emb
    return ref_embeddings, ref_labels


class RankingLoss(Loss):
    """Base of the losses: ``loss(embeddings, labels, ref_embeddings=None, ref_labels=None) -> scalar``.

    Similarities are dot products of unit-norm embeddings. normalize=True (default): embeddings (and
    the reference set) that are not unit-norm are L2-normalised by the loss — as PML users expect,
    whose distances normalise; ones already unit-norm (every row within 1e-3) are used as given, so a
    model that normalises itself gets unchanged gradients. normalize=False ranks raw dot products.
    With no reference set
    the batch is its own reference and, as in the original code, each query is its own positive at
    rank 1 (``include_self=True``). Queries without any positive in the reference set are left out
    of the mean (never NaN); a batch where no query has one gives a zero loss that keeps the graph.

    memory_budget bounds the work tensors of one block of the rank kernel (bytes). bin_width=None
    sums the surrogate over every less relevant reference exactly; a width (e.g. tau/10) switches to
    the binned kernel of :mod:`rankopt.losses.binned_kernel`, O(items × band bins) per query instead of
    O(items × references), with the error bound stated there: for memory banks of tens of thousands.
    """

    def __init__(
        self,
        include_self: bool = True,
        memory_budget: int = 64 << 20,
        bin_width: float | None = None,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        self.include_self = include_self
        self.memory_budget = memory_budget
        self.bin_width = bin_width  # None: exact pairwise sums; a width: the binned kernel for big references
        self.normalize = normalize

    def compute_loss(self, embeddings, labels, ref_embeddings, ref_labels) -> torch.Tensor:
        batch = prepare_batch(
            embeddings,
            labels,
            ref_embeddings,
            ref_labels,
            name=type(self).__name__,
            hierarchical=self.hierarchical,
            include_self=self.include_self,
            normalize=self.normalize,
        )
        return self.compute(batch)

    def compute(self, batch: RankBatch) -> torch.Tensor:
        raise NotImplementedError

    # shared pieces -------------------------------------------------------------------------------
    def _sums(
        self, batch: RankBatch, items, item_levels, valid, step: Step, selector: str, among_items: bool, weights=None
    ):
        """pair_sums over the references (among_items=False) or over the ranked items only."""
        if among_items:
            return pair_sums(
                batch.scores,
                items,
                item_levels,
                valid,
                step,
                selector,
                cand_levels=torch.where(valid, item_levels, torch.full_like(item_levels, -1)),
                cand_index=items,
                weights=weights,
                memory_budget=self.memory_budget,
            )
        return pair_sums(
            batch.scores,
            items,
            item_levels,
            valid,
            step,
            selector,
            cand_levels=batch.levels,
            weights=weights,
            memory_budget=self.memory_budget,
        )

    def surrogate_ranks(
        self, batch: RankBatch, items, item_levels, valid, step: Step
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(rank̃, exact rank among items at least as relevant), both (B, P).

        rank̃(k) = 1 + Σ_{ℓ_j ≥ ℓ_k} H(s_j − s_k) + Σ_{ℓ_j < ℓ_k} step(s_j − s_k): the exact step for
        items at least as relevant as k (they are all ranked items), the surrogate for the others.
        """
        above = items_above_by_level(batch.scores, items, item_levels, valid, batch.n_levels)  # (B, P, L+1)
        at_least = torch.arange(batch.n_levels + 1, device=items.device) >= item_levels.unsqueeze(-1)
        plus = 1 + (above * at_least).sum(dim=-1)
        return plus + self.lower_sums(batch, items, item_levels, valid, step), plus

    def lower_sums(self, batch: RankBatch, items, item_levels, valid, step: Step) -> torch.Tensor:
        """Σ_{ℓ_j < ℓ_k} step(s_j − s_k) over the references: exact, or binned when bin_width is set."""
        if self.bin_width is not None:
            return binned_lower_sums(
                batch.scores, items, item_levels, valid, batch.levels, step, self.bin_width, self.memory_budget
            )
        return self._sums(batch, items, item_levels, valid, step, "lower", among_items=False)


def mean_over_queries(per_query: torch.Tensor, has_item: torch.Tensor) -> torch.Tensor:
    """Mean over the queries that have a positive; 0 (with the graph kept) when none does."""
    if bool(has_item.any()):
        return per_query[has_item].mean()
    return per_query.sum() * 0.0
