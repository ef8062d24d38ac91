"""Ranked lists with their tie groups: the one representation every metric reads.

A ``Ranking`` keeps, for a block of queries, only the items that can carry relevance (level >= 1),
in decreasing score order, each with the bounds of its *tie group* in the full ranked list: ``start``
(how many items score strictly higher) and ``size`` (how many score exactly the same). Items of
level 0 are not stored: every metric only needs how many of them share a group or sit above one,
which the bounds give. So a block costs O(Q · relevant items), not O(Q · gallery), once the bounds
are known.

Under ``ties="expected"`` every metric is the exact expectation over uniformly random orders of each
tie group, in closed form from the group's bounds and per-level composition (no enumeration).
``pessimistic`` / ``optimistic`` order each group by increasing / decreasing level (level-0 items
first / last) and then treat every item as its own group.

Positions are 0-based; a group occupies positions start .. start + size - 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = [
    "TIES",
    "Ranking",
    "ranking_from_scores",
    "ranking_from_prefix",
    "ranking_from_kept",
    "count_above_and_tied",
    "log_comb",
    "harmonic_sums",
]

TIES = ("expected", "pessimistic", "optimistic")


@dataclass
class Ranking:
    levels: torch.Tensor  # (Q, M) int64, level of each kept item; 0 marks an empty slot
    start: torch.Tensor  # (Q, M) int64, items ranked strictly above the item's tie group
    size: torch.Tensor  # (Q, M) int64, items in the tie group (kept or not)
    slot_start: torch.Tensor  # (Q, M) int64, first slot of the item's group among the kept items
    slot_end: torch.Tensor  # (Q, M) int64, one past the last such slot
    counts: torch.Tensor  # (Q, L+1) int64, ranked items at each level (whole list, self excluded)
    n_levels: int  # L
    n_ranked: int  # length of the full ranked list

    @property
    def valid(self) -> torch.Tensor:
        return self.levels > 0

    @property
    def heads(self) -> torch.Tensor:
        """(Q, M) bool: the first kept item of each group, so each group is counted once."""
        slots = torch.arange(self.levels.shape[1], device=self.levels.device)
        return (self.slot_start == slots) & self.valid

    def at_least(self, level: int) -> torch.Tensor:
        """(Q,) ranked items with level >= ``level``: the relevant count R at that level."""
        return self.counts[:, level:].sum(dim=1)

    def above_and_within(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For a per-item quantity x (Q, M) (zero for level-0 items): its sum over the items ranked
        above each item's group, and over the group itself. Both (Q, M) float64."""
        cum = torch.nn.functional.pad((x * self.valid).to(torch.float64).cumsum(dim=1), (1, 0))  # (Q, M+1)
        above = cum.gather(1, self.slot_start)
        return above, cum.gather(1, self.slot_end) - above


def log_comb(n: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """log C(n, k) in float64; -inf where k < 0 or k > n."""
    n, k = n.to(torch.float64), k.to(torch.float64)
    valid = (k >= 0) & (k <= n)
    nn = n.clamp_min(0)
    kk = torch.minimum(k.clamp_min(0), nn)
    out = torch.lgamma(nn + 1) - torch.lgamma(kk + 1) - torch.lgamma(nn - kk + 1)
    return torch.where(valid, out, torch.full_like(out, float("-inf")))


def harmonic_sums(start: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """S0 = Σ_{i=1..m} 1/(B+i) and S1 = Σ_{i=1..m} (i-1)/(B+i), with B = start, in float64.

    S0 = ψ(B+m+1) − ψ(B+1) (digamma), S1 = m − (B+1)·S0: the position sums of a tie group in O(1).
    """
    b, m = start.to(torch.float64), m.to(torch.float64)
    s0 = torch.where(m > 0, torch.digamma(b + m + 1) - torch.digamma(b + 1), torch.zeros_like(b))
    return s0, m - (b + 1) * s0


def _group_bounds(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Start and one-past-end index of the run of equal values holding each entry of each row."""
    n_rows, k = values.shape
    pos = torch.arange(k, device=values.device).expand(n_rows, k)
    change = values[:, 1:] != values[:, :-1]  # (Q, K-1): a new run starts at j+1
    ones = torch.ones(n_rows, 1, dtype=torch.bool, device=values.device)
    start = torch.where(torch.cat([ones, change], dim=1), pos, torch.zeros_like(pos)).cummax(dim=1).values
    is_last = torch.cat([change, ones], dim=1)
    end = torch.where(is_last, pos, torch.full_like(pos, k)).flip(1).cummin(dim=1).values.flip(1) + 1
    return start, end


def _finish(
    levels: torch.Tensor,
    start: torch.Tensor,
    size: torch.Tensor,
    counts: torch.Tensor,
    n_levels: int,
    n_ranked: int,
    ties: str,
) -> Ranking:
    """Slot-space group bounds, and the tie policy applied. levels/start/size: (Q, M) kept items in
    decreasing score order, empty slots (level 0) last."""
    levels = levels.to(torch.int64)
    valid = levels > 0
    size = torch.where(valid, size, torch.ones_like(size))  # empty slots: harmless unit groups
    # kept items tie exactly when their whole-list groups coincide; empty slots get distinct negative keys
    slots = torch.arange(levels.shape[1], device=levels.device).expand_as(levels)
    group_key = torch.where(valid, start, -2 - slots)
    slot_start, slot_end = _group_bounds(group_key)
    if ties != "expected":
        # order each group by level, then give every item its own position: ascending = pessimistic
        # (level-0 items, not stored, take the group's first places), descending = optimistic
        k = levels if ties == "pessimistic" else -levels
        order = torch.sort(k, dim=1, stable=True).indices
        regroup = torch.sort(slot_start.gather(1, order), dim=1, stable=True).indices
        perm = order.gather(1, regroup)
        levels, start, size = levels.gather(1, perm), start.gather(1, perm), size.gather(1, perm)
        n_kept = slot_end - slot_start
        rank_in_group = slots - slot_start
        offset = size - n_kept if ties == "pessimistic" else torch.zeros_like(size)
        start = start + offset + rank_in_group
        size = torch.ones_like(size)
        slot_start, slot_end = slots.contiguous(), slots + 1
    return Ranking(levels, start, size, slot_start, slot_end, counts, n_levels, n_ranked)


def ranking_from_scores(
    scores: torch.Tensor,
    levels: torch.Tensor,
    counts: torch.Tensor,
    n_levels: int,
    n_ranked: int,
    ties: str = "expected",
) -> Ranking:
    """Ranking over whole rows. scores: (Q, G), excluded items (the query itself) at -inf;
    levels: (Q, G) of every item. A top-k picks the items of level >= 1; see :func:`ranking_from_kept`."""
    keep = levels > 0
    n_keep = max(1, int(keep.sum(dim=1).max()))
    masked = torch.where(keep, scores, torch.full_like(scores, float("-inf")))
    kept_values, kept_index = torch.topk(masked, n_keep, dim=1, largest=True, sorted=True)
    return ranking_from_kept(scores, kept_values, levels.gather(1, kept_index), counts, n_levels, n_ranked, ties)


def ranking_from_kept(
    scores: torch.Tensor,
    kept_values: torch.Tensor,
    kept_levels: torch.Tensor,
    counts: torch.Tensor,
    n_levels: int,
    n_ranked: int,
    ties: str = "expected",
    combine: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> Ranking:
    """Ranking over whole rows from the items that carry relevance: their scores (Q, M) and levels,
    in any order, -inf (or level 0) in unused slots. Costs O(G·kept) or O(G·log kept) per row to
    count the items above and tied with each kept item — no sort of the rows. ``scores`` may be a
    part of each row (a gallery shard): ``combine(above, tied)`` then sums the parts' counts."""
    kept_values, order = torch.sort(kept_values, dim=1, descending=True, stable=True)
    kept_levels = kept_levels.gather(1, order).to(torch.int64) * (kept_values > float("-inf"))
    above, tied = count_above_and_tied(scores, kept_values)
    if combine is not None:
        above, tied = combine(above, tied)
    return _finish(kept_levels, above, tied, counts, n_levels, n_ranked, ties)


LINEAR_COUNT_MAX = 32  # up to this many kept values per row, compare against each; beyond, binary search
_CACHE_BYTES = 4 << 20  # a block of scores re-read 2M times: this size stays in a CPU's cache
_PLACEMENT_BYTES = 64 << 20  # the binary-search placements of one block of rows (two int64 per score)


def count_above_and_tied(scores: torch.Tensor, kept_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each kept value u (Q, M), sorted decreasing: how many of its row's scores (Q, G) are > u
    and how many == u, without sorting the rows. Few kept values: count #{s > u} and #{s ≥ u} by
    comparison, 2M passes over a cache-sized block of rows. Many: place every score among the kept
    values by binary search, O(G·log M), and count the placements — with u ascending
    (u_0 ≤ … ≤ u_{M−1}), P(s) = #{u < s} and P'(s) = #{u ≤ s} give #{s ≤ u_j} = #{s : P(s) ≤ j}
    and #{s < u_j} = #{s : P'(s) ≤ j}. Either way the extra memory is a small block of rows.
    """
    q, g = scores.shape
    m = kept_values.shape[1]
    scores = scores.contiguous()
    above = torch.empty(q, m, dtype=torch.int64, device=scores.device)
    tied = torch.empty(q, m, dtype=torch.int64, device=scores.device)
    linear = m <= LINEAR_COUNT_MAX
    budget = _CACHE_BYTES // scores.element_size() if linear else _PLACEMENT_BYTES // 16
    rows = max(1, budget // max(1, g)) if scores.device.type == "cpu" or not linear else q
    for r in range(0, q, rows):
        block, kept = scores[r : r + rows], kept_values[r : r + rows]
        a, t = (_count_by_comparison if linear else _count_by_search)(block, kept)
        above[r : r + rows], tied[r : r + rows] = a, t
    return above, tied


def _count_by_comparison(scores: torch.Tensor, kept: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    hit = torch.empty(scores.shape, dtype=torch.bool, device=scores.device)
    above = torch.empty(kept.shape, dtype=torch.int64, device=scores.device)
    at_least = torch.empty(kept.shape, dtype=torch.int64, device=scores.device)
    for j in range(kept.shape[1]):
        u = kept[:, j : j + 1]
        above[:, j] = torch.gt(scores, u, out=hit).sum(dim=1, dtype=torch.int32)
        at_least[:, j] = torch.ge(scores, u, out=hit).sum(dim=1, dtype=torch.int32)
    return above, at_least - above


def _count_by_search(scores: torch.Tensor, kept: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    q, g = scores.shape
    m = kept.shape[1]
    ascending = kept.flip(1).contiguous()
    ones = torch.ones(1, dtype=torch.int64, device=scores.device).expand(q, g)
    at_most = []
    for right in (False, True):
        placed = torch.searchsorted(ascending, scores, right=right)  # (Q, G) in 0..M
        hist = torch.zeros(q, m + 1, dtype=torch.int64, device=scores.device).scatter_add_(1, placed, ones)
        at_most.append(hist.cumsum(dim=1)[:, :m])  # [j]: scores placed at <= j
    below_or_tied, below = at_most
    return (g - below_or_tied).flip(1), (below_or_tied - below).flip(1)


def ranking_from_prefix(
    values: torch.Tensor,
    levels: torch.Tensor,
    counts: torch.Tensor,
    n_levels: int,
    n_ranked: int,
    ties: str = "expected",
) -> Ranking:
    """Ranking from the leading positions of each list (values (Q, K) decreasing, levels (Q, K)).

    Every tie group touching the positions the metrics read must lie wholly in the prefix."""
    start, end = _group_bounds(values)
    keep = levels > 0
    n_keep = max(1, int(keep.sum(dim=1).max()))
    pos = torch.arange(values.shape[1], device=values.device).expand_as(levels)
    order = torch.sort(torch.where(keep, pos, pos + values.shape[1]), dim=1).indices[:, :n_keep]
    kept_levels = levels.gather(1, order).to(torch.int64) * keep.gather(1, order)
    return _finish(
        kept_levels,
        start.gather(1, order),
        (end - start).gather(1, order),
        counts,
        n_levels,
        n_ranked,
        ties,
    )
