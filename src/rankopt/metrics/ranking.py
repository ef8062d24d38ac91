"""Ranked lists with their tie groups: the one representation every metric reads.

A ``Ranking`` holds, for a block of queries, the levels of the items in decreasing score order
(a prefix of the full list, or all of it) and, for each position, the bounds of its tie group:
the positions whose scores are exactly equal. Under ``ties="expected"`` every metric takes the
exact expectation over the uniformly random orders of each group, in closed form from the group's
bounds and per-level counts (no enumeration). ``pessimistic`` / ``optimistic`` reorder each group by
increasing / decreasing level and then treat every item as its own group.

Invariant: every tie group that touches a position below ``depth`` lies wholly inside the prefix,
so group totals read from the prefix are the true totals.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["TIES", "Ranking", "build_ranking"]

TIES = ("expected", "pessimistic", "optimistic")


@dataclass
class Ranking:
    levels: torch.Tensor  # (Q, K) int64, level of the item at each position
    start: torch.Tensor  # (Q, K) int64, first position of the item's tie group
    end: torch.Tensor  # (Q, K) int64, one past the last position of the group
    counts: torch.Tensor  # (Q, L+1) int64, ranked items at each level (whole list, self excluded)
    n_levels: int  # L
    n_ranked: int  # length of the full ranked list

    @property
    def size(self) -> torch.Tensor:
        return self.end - self.start

    @property
    def positions(self) -> torch.Tensor:
        return torch.arange(self.levels.shape[1], device=self.levels.device).expand_as(self.levels)

    def at_least(self, level: int) -> torch.Tensor:
        """(Q,) ranked items with level >= ``level``: the relevant count R at that level."""
        return self.counts[:, level:].sum(dim=1)

    def above_and_within(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For a per-position quantity x (Q, K): its sum over the positions before each position's
        group, and its sum over the group itself. Both (Q, K) float64."""
        cum = torch.nn.functional.pad(x.to(torch.float64).cumsum(dim=1), (1, 0))  # (Q, K+1)
        above = cum.gather(1, self.start)
        return above, cum.gather(1, self.end) - above

    def expected(self, x: torch.Tensor) -> torch.Tensor:
        """Expected value of x at each position over random orders of each tie group: the group mean."""
        _, within = self.above_and_within(x)
        return within / self.size


def _group_bounds(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Start and one-past-end position of the run of equal values holding each position."""
    n_rows, k = values.shape
    pos = torch.arange(k, device=values.device).expand(n_rows, k)
    change = values[:, 1:] != values[:, :-1]  # (Q, K-1): a new group starts at j+1
    new_start = torch.cat([torch.ones(n_rows, 1, dtype=torch.bool, device=values.device), change], dim=1)
    start = torch.where(new_start, pos, torch.zeros_like(pos)).cummax(dim=1).values
    is_last = torch.cat([change, torch.ones(n_rows, 1, dtype=torch.bool, device=values.device)], dim=1)
    end_incl = torch.where(is_last, pos, torch.full_like(pos, k)).flip(1).cummin(dim=1).values.flip(1)
    return start, end_incl + 1


def build_ranking(
    values: torch.Tensor,
    levels: torch.Tensor,
    counts: torch.Tensor,
    n_levels: int,
    n_ranked: int,
    ties: str = "expected",
) -> Ranking:
    """Ranking from a prefix sorted by decreasing score.

    values: (Q, K) scores in decreasing order; levels: (Q, K) levels of those items;
    counts: (Q, L+1) items per level over the whole ranked list.
    """
    levels = levels.to(torch.int64)
    start, end = _group_bounds(values)
    if ties != "expected":
        # within each group, order by level (ascending = pessimistic), then freeze the order
        key = levels if ties == "pessimistic" else -levels
        order = torch.sort(key, dim=1, stable=True).indices
        regroup = torch.sort(start.gather(1, order), dim=1, stable=True).indices
        levels = levels.gather(1, order.gather(1, regroup))
        pos = torch.arange(values.shape[1], device=values.device).expand_as(levels)
        start, end = pos.contiguous(), pos + 1
    return Ranking(levels, start, end, counts, n_levels, n_ranked)
