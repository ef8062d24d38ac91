"""Labels → levels → relevance.

Labels are int64 (N, L), column 0 the finest level (product, species) and column L-1 the coarsest.
The *level* of item k for query q is the number of label columns they share (0..L); binary relevance
at level λ is ``level >= λ`` (the default λ = L: same finest label). Hierarchical relevance is
HAPPIER's "pop" relevance (Ramzi et al., ECCV 2022):

    rel_q(k) = w_ℓ / n_ℓ(q),   w_ℓ = (ℓ / L)^α,  w_0 = 0,   ℓ = level(q, k)

where n_ℓ(q) counts the items at level ℓ over the whole evaluated set, the query included. HAPPIER
writes w_ℓ = (ℓ / (L-1))^α; the two differ by a global factor, to which H-AP is invariant, and ours
stays defined for flat labels (L = 1), where H-AP then equals AP.
"""

from __future__ import annotations

import warnings

import torch

__all__ = ["levels", "gathered_levels", "is_tree", "check_tree", "level_counts", "pop_relevance", "LabelGroups"]


def levels(query_labels: torch.Tensor, item_labels: torch.Tensor) -> torch.Tensor:
    """Number of shared label columns between each query (Q, L) and each item (G, L): (Q, G) int8.

    Compares one column at a time, so no (Q, G, L) temporary is built.
    """
    out = torch.zeros(query_labels.shape[0], item_labels.shape[0], dtype=torch.int8, device=item_labels.device)
    for c in range(query_labels.shape[1]):
        out += query_labels[:, c : c + 1] == item_labels[:, c].unsqueeze(0)
    return out


def gathered_levels(query_labels: torch.Tensor, gallery_labels: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Levels of the gallery items ``indices`` (Q, K) for each query: (Q, K) int8.

    Gathers one label column at a time, so no (Q, K, L) int64 tensor is built.
    """
    out = torch.zeros(indices.shape, dtype=torch.int8, device=indices.device)
    for c in range(query_labels.shape[1]):
        out += gallery_labels[:, c][indices] == query_labels[:, c : c + 1]
    return out


def is_tree(labels: torch.Tensor) -> bool:
    """True when every label of column c has a single parent in column c+1 (a proper hierarchy).

    On a tree, sharing column c implies sharing every coarser column, so the level is the length of
    the shared suffix of columns and counts can be taken by hashing suffixes instead of comparing
    every pair.
    """
    for c in range(labels.shape[1] - 1):
        pairs = torch.unique(labels[:, c : c + 2], dim=0)
        if torch.unique(pairs[:, 0]).numel() != pairs.shape[0]:
            return False
    return True


def check_tree(labels: torch.Tensor, what: str) -> None:
    """Warn, naming a label with two parents, when hierarchical labels are not a tree: the level of a pair
    is then the number of columns it shares, not a depth in a hierarchy, and H-AP / ASI read it so."""
    for c in range(labels.shape[1] - 1):
        pairs = torch.unique(labels[:, c : c + 2], dim=0)
        values, counts = torch.unique(pairs[:, 0], return_counts=True)
        if (counts > 1).any():
            child = int(values[counts > 1][0])
            parents = pairs[pairs[:, 0] == child, 1].tolist()
            warnings.warn(
                f"{what}: the labels are not a tree (label {child} of column {c} has {len(parents)} parents in column "
                f"{c + 1}: {', '.join(map(str, parents[:4]))}); levels count the shared columns, so these metrics "
                "read them as such, not as a hierarchy",
                UserWarning,
                stacklevel=3,
            )
            return


def level_counts(
    query_labels: torch.Tensor,
    gallery_labels: torch.Tensor,
    queries_in_gallery: bool = False,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Per query, how many gallery items sit at each level: (Q, L+1) int64, column ℓ = level ℓ.

    queries_in_gallery: every query is itself a gallery item; it is then not counted (one item fewer
    at level L).
    """
    n_q, n_cols = query_labels.shape
    n_g = gallery_labels.shape[0]
    both = torch.cat([query_labels, gallery_labels])
    if is_tree(both):
        # count of items sharing at least ℓ columns = items with the same suffix of ℓ coarse columns
        at_least = torch.empty(n_q, n_cols + 2, dtype=torch.int64, device=query_labels.device)
        at_least[:, 0] = n_g
        at_least[:, n_cols + 1] = 0
        for lvl in range(1, n_cols + 1):
            _, inverse = torch.unique(both[:, n_cols - lvl :], dim=0, return_inverse=True)
            counts = torch.bincount(inverse[n_q:], minlength=int(inverse.max()) + 1)
            at_least[:, lvl] = counts[inverse[:n_q]]
        exact = at_least[:, :-1] - at_least[:, 1:]
    else:
        exact = torch.empty(n_q, n_cols + 1, dtype=torch.int64, device=query_labels.device)
        for start in range(0, n_q, chunk_size):
            lv = levels(query_labels[start : start + chunk_size], gallery_labels).to(torch.int64)
            offsets = torch.arange(lv.shape[0], device=lv.device).unsqueeze(1) * (n_cols + 1)
            exact[start : start + lv.shape[0]] = torch.bincount(
                (lv + offsets).flatten(), minlength=lv.shape[0] * (n_cols + 1)
            ).view(-1, n_cols + 1)
    if queries_in_gallery:
        exact = exact.clone()
        exact[:, n_cols] -= 1
    return exact


def pop_relevance(counts: torch.Tensor, alpha: float = 1.0, include_query: bool = True) -> torch.Tensor:
    """HAPPIER "pop" relevance per level: (Q, L+1) float64, rel_ℓ = (ℓ/L)^α / n_ℓ, rel_0 = 0.

    counts: (Q, L+1) items per level in the gallery, self excluded. With include_query the query
    itself is counted at level L, as in HAPPIER's evaluation.
    """
    n_cols = counts.shape[1] - 1
    n = counts.to(torch.float64)
    if include_query:
        n = n.clone()
        n[:, n_cols] += 1
    weights = (torch.arange(n_cols + 1, dtype=torch.float64, device=counts.device) / n_cols) ** alpha
    weights[0] = 0.0
    return torch.where(n > 0, weights / n.clamp_min(1), torch.zeros_like(n))


class LabelGroups:
    """Gallery items grouped by one label column, to list for each query the items sharing its label
    without comparing it to the whole gallery. On a tree (:func:`is_tree`) the coarsest column's group
    is exactly the set of items at level >= 1."""

    def __init__(self, column: torch.Tensor) -> None:
        self.order = torch.argsort(column, stable=True)
        self.labels, self.sizes = torch.unique_consecutive(column[self.order], return_counts=True)
        self.starts = torch.cumsum(self.sizes, 0) - self.sizes

    def members(self, labels: torch.Tensor) -> torch.Tensor:
        """(Q, M) gallery indices of the items whose label equals each query's (Q,), in gallery order,
        padded with -1; M = the largest group asked for (at least 1)."""
        pos = torch.searchsorted(self.labels, labels).clamp(max=len(self.labels) - 1)
        size = torch.where(self.labels[pos] == labels, self.sizes[pos], torch.zeros_like(pos))
        width = max(1, int(size.max())) if len(size) else 1
        offsets = torch.arange(width, device=labels.device)
        slot = (self.starts[pos].unsqueeze(1) + offsets).clamp(max=len(self.order) - 1)
        return torch.where(offsets < size.unsqueeze(1), self.order[slot], torch.full_like(slot, -1))

    def relevant(
        self, query_labels: torch.Tensor, gallery_labels: torch.Tensor, exclude: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For queries (Q, L), grouped here by their coarsest label on a tree: the gallery items at
        level >= 1 — (indices, valid, levels), each (Q, M); padding and each query's ``exclude`` index
        (itself, in leave-one-out) are invalid, with index 0 and level 0."""
        members = self.members(query_labels[:, -1].contiguous())
        valid = members >= 0
        if exclude is not None:
            valid &= members != exclude.unsqueeze(1)
        index = members.clamp_min(0)
        return index, valid, gathered_levels(query_labels, gallery_labels, index) * valid
