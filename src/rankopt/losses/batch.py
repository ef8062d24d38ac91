"""What every rank loss starts from: validated inputs, the score matrix and the level of each pair."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rankopt.relevance import levels as pair_levels
from rankopt.validation import check_same_length

__all__ = ["RankBatch", "prepare_batch", "check_loss_inputs", "unit_norm"]


def check_loss_inputs(
    embeddings: torch.Tensor, labels: torch.Tensor, name: str, hierarchical: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings (B, d) float → fp32 or fp64 (fp16/bf16 are upcast: rank arithmetic never runs in half
    precision); labels (B,) or (B, L) int → int64 (B, L)."""
    if not isinstance(embeddings, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise TypeError(f"{name}: embeddings and labels must be torch tensors")
    if embeddings.ndim != 2 or embeddings.shape[0] == 0 or embeddings.shape[1] == 0:
        raise ValueError(f"{name}: embeddings must be a non-empty (B, d) tensor; got shape {tuple(embeddings.shape)}")
    if not torch.is_floating_point(embeddings):
        raise ValueError(f"{name}: embeddings must be floating point; got {embeddings.dtype}")
    if torch.is_floating_point(labels) or labels.dtype == torch.bool or torch.is_complex(labels):
        raise ValueError(f"{name}: labels must be integer class ids; got dtype {labels.dtype}")
    if labels.ndim == 1:
        labels = labels.unsqueeze(1)
    if labels.ndim != 2:
        raise ValueError(f"{name}: labels must be (B,) or (B, L); got shape {tuple(labels.shape)}")
    check_same_length(embeddings, labels, f"{name}: embeddings", "labels")
    if labels.shape[1] > 1 and not hierarchical:
        raise ValueError(
            f"{name} takes flat labels (B,); got {labels.shape[1]} label columns. Pass labels[:, 0] for the "
            "finest level, or use a hierarchical loss (HAP, SupNDCG)"
        )
    if not bool(torch.isfinite(embeddings).all()):
        raise ValueError(f"{name}: embeddings contain NaN or inf")
    if embeddings.dtype != torch.float64:
        embeddings = embeddings.float()
    return embeddings, labels.to(torch.int64)


UNIT_NORM_TOLERANCE = 1e-3


def unit_norm(x: torch.Tensor, name: str = "embeddings") -> torch.Tensor:
    """x itself when every row's norm is within UNIT_NORM_TOLERANCE of 1 (a model that normalises keeps
    its exact gradients), else every row L2-normalised. A zero row has no direction: normalising it
    would give a gradient of 1/eps (≈ 1e12), so it is an error naming the row."""
    norms = x.detach().norm(dim=1)
    if bool(((norms - 1).abs() <= UNIT_NORM_TOLERANCE).all()):
        return x
    zero = torch.nonzero(norms == 0).flatten()
    if len(zero):
        raise ValueError(
            f"{name}: row {int(zero[0])} has zero norm ({len(zero)} such rows): it has no direction to "
            "rank by; pass normalize=False to rank raw dot products"
        )
    return torch.nn.functional.normalize(x, dim=1)


@dataclass
class RankBatch:
    scores: torch.Tensor  # (B, N) fp32 similarities, differentiable
    levels: torch.Tensor  # (B, N) int64 shared label columns; -1 = not ranked (the query itself when excluded)
    n_levels: int
    self_excluded: bool = False  # in-batch with include_self=False: the query is not among the references

    def ranked_items(self, min_level: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """References with level >= min_level for each query, padded: indices, levels, valid (B, P)."""
        keep = self.levels >= min_level
        p = max(1, int(keep.sum(dim=1).max()))
        # stable: the kept references first, in index order
        order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices[:, :p]
        valid = keep.gather(1, order)
        return order, self.levels.gather(1, order), valid

    def level_counts(self) -> torch.Tensor:
        """(B, L+1) references at each level (ignored ones left out)."""
        lv = self.levels.clamp_min(0) + (self.n_levels + 1) * torch.arange(
            self.levels.shape[0], device=self.levels.device
        ).unsqueeze(1)
        counts = torch.bincount(lv[self.levels >= 0], minlength=self.levels.shape[0] * (self.n_levels + 1))
        return counts.view(-1, self.n_levels + 1)


def prepare_batch(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    ref_embeddings: torch.Tensor | None,
    ref_labels: torch.Tensor | None,
    *,
    name: str,
    hierarchical: bool,
    include_self: bool,
    normalize: bool = True,
) -> RankBatch:
    """Scores emb · refᵀ in fp32 and pair levels. Without a reference set the batch is its own, and
    with include_self=False each query's own entry is ignored. normalize: L2-normalise embeddings
    and references that are not unit-norm already."""
    emb, lab = check_loss_inputs(embeddings, labels, name, hierarchical)
    if normalize:
        emb = unit_norm(emb, f"{name}: embeddings")
    if (ref_embeddings is None) != (ref_labels is None):
        raise ValueError(f"{name}: give both ref_embeddings and ref_labels, or neither")
    if ref_embeddings is None:
        ref, ref_lab = emb, lab
    else:
        ref, ref_lab = check_loss_inputs(ref_embeddings, ref_labels, f"{name} (reference set)", hierarchical)
        if normalize:
            ref = unit_norm(ref, f"{name}: ref_embeddings")
        if ref.shape[1] != emb.shape[1]:
            raise ValueError(f"{name}: ref_embeddings have dimension {ref.shape[1]} but embeddings have {emb.shape[1]}")
        if ref_lab.shape[1] != lab.shape[1]:
            raise ValueError(f"{name}: ref_labels have {ref_lab.shape[1]} label columns but labels have {lab.shape[1]}")
    scores = emb @ ref.T  # (B, N)
    lv = pair_levels(lab, ref_lab).to(torch.int64)
    if ref_embeddings is None and not include_self:
        lv.fill_diagonal_(-1)
    return RankBatch(scores, lv, lab.shape[1], self_excluded=ref_embeddings is None and not include_self)
