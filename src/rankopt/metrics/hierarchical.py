"""Hierarchical metrics: H-AP (HAPPIER, Ramzi et al., ECCV 2022) and ASI (DyML, Sun et al., CVPR 2021).

H-AP, with the "pop" relevance of :mod:`rankopt.relevance` (counts over the whole evaluated set,
the query included) and the query itself removed from the ranking:

    H-rank(k) = rel(k) + Σ_{j ranked above k} min(rel(j), rel(k))
    H-AP      = Σ_{k: rel(k) > 0} H-rank(k) / rank(k)  /  Σ_k rel(k)

On flat labels H-AP equals AP. Under ``ties="expected"`` it is the exact expectation over random
orders of each tie group: for a group of n items starting after position B, with X the sum over its
items of rel(k) + Σ_{j above the group} min(rel(j), rel(k)) and Y the sum over ordered pairs of its
items of min(rel(j), rel(k)), the group's i-th position contributes (X + (i−1)/(n−1)·Y) / (n·(B+i)).

ASI, over the first R positions (R = items with level > 0), with t the ranked levels and t* the
ideal ones (sorted by decreasing level):

    SI(n) = (1/n) Σ_{v ≥ 1} min(#{p ≤ n: t_p = v}, #{p ≤ n: t*_p = v}),   ASI = (1/R) Σ_{n ≤ R} SI(n)

Under ``ties="expected"`` the count of level v within the first n positions is hypergeometric
inside the tie group that straddles n; ASI takes the exact expectation of the min by summing that
distribution (only tied positions pay for it).
"""

from __future__ import annotations

import torch

from rankopt.metrics.ranking import Ranking, harmonic_sums, log_comb
from rankopt.relevance import pop_relevance

__all__ = ["hierarchical_ap", "asi"]


def hierarchical_ap(ranking: Ranking, alpha: float = 1.0) -> torch.Tensor:
    """H-AP per query over the full ranked list: (Q,) float64."""
    rel = pop_relevance(ranking.counts, alpha)  # (Q, L+1)
    n_lv = ranking.n_levels
    parts = [ranking.above_and_within(ranking.levels == lvl) for lvl in range(1, n_lv + 1)]
    x = torch.zeros(ranking.levels.shape, dtype=torch.float64, device=ranking.levels.device)
    y = torch.zeros_like(x)
    for a in range(1, n_lv + 1):
        within_a = parts[a - 1][1]
        rel_a = rel[:, a : a + 1]
        x_a = rel_a.expand_as(x).clone()
        y_a = torch.zeros_like(x)
        for b in range(1, n_lv + 1):
            above_b, within_b = parts[b - 1]
            m = torch.minimum(rel_a, rel[:, b : b + 1])  # (Q, 1)
            x_a += above_b * m
            y_a += (within_b - float(a == b)) * m
        x += within_a * x_a
        y += within_a * y_a
    n = ranking.size.to(torch.float64)
    s0, s1 = harmonic_sums(ranking.start, ranking.size)
    inside = torch.where(n > 1, y / (n - 1).clamp_min(1), torch.zeros_like(n)) * s1
    total = (ranking.heads * (x * s0 + inside) / n).sum(dim=1)
    mass = (ranking.counts.to(torch.float64) * rel).sum(dim=1)
    return torch.where(mass > 0, total / mass.clamp_min(1e-300), torch.zeros_like(total))


def asi(ranking: Ranking) -> torch.Tensor:
    """ASI per query over the first R positions: (Q,) float64."""
    counts = ranking.counts
    r_total = counts[:, 1:].sum(dim=1)  # (Q,)
    depth = max(1, int(r_total.max()))
    device = counts.device
    t = torch.arange(1, depth + 1, device=device).expand(counts.shape[0], depth)  # positions 1..depth
    big = torch.iinfo(torch.int64).max // 4
    ends = torch.where(ranking.valid, ranking.start + ranking.size, torch.full_like(ranking.start, big))
    done = torch.searchsorted(ends, t.contiguous(), right=True)  # (Q, depth): kept items of groups wholly in the top t
    n_slots = ranking.levels.shape[1]
    nxt = done.clamp(max=n_slots - 1)  # the group straddling t, if any, starts at that slot
    b, size = ranking.start.gather(1, nxt), ranking.size.gather(1, nxt)
    straddles = (done < n_slots) & ranking.valid.gather(1, nxt) & (b < t)
    draws = torch.where(straddles, t - b, torch.zeros_like(t))
    total = torch.zeros(t.shape, dtype=torch.float64, device=device)
    higher = torch.zeros_like(counts[:, 0])
    for v in range(ranking.n_levels, 0, -1):
        is_v = (ranking.levels == v).to(torch.float64)
        cum = torch.nn.functional.pad(is_v.cumsum(dim=1), (1, 0))
        above = cum.gather(1, done)  # level-v items in groups wholly in the top t
        _, within = ranking.above_and_within(ranking.levels == v)
        r = torch.where(straddles, within.gather(1, nxt), torch.zeros_like(above)).to(torch.int64)
        ideal = torch.minimum((t - higher.unsqueeze(1)).clamp_min(0), counts[:, v : v + 1]).to(torch.float64)
        higher = higher + counts[:, v]
        slack = ideal - above  # how many more of level v the min can still count
        capped = torch.minimum(draws, r).to(torch.float64)
        mean = torch.where(straddles, draws * r / size.to(torch.float64), torch.zeros_like(above))
        value = torch.where(slack <= 0, ideal, above + torch.where(slack >= capped, mean, slack))
        partial = (slack > 0) & (slack < capped)
        if bool(partial.any()):
            value[partial] = above[partial] + _expected_min_hypergeom(
                size[partial], r[partial], draws[partial], slack[partial].to(torch.int64)
            )
        total += value
    keep = t <= r_total.unsqueeze(1)
    return (total / t * keep).sum(dim=1) / r_total.clamp_min(1).to(torch.float64)


def _expected_min_hypergeom(n: torch.Tensor, r: torch.Tensor, m: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """E[min(H, t)] for H ~ Hypergeometric(population n, r successes, m draws): Σ_{h<t} P(H > h)."""
    out = torch.zeros(n.shape, dtype=torch.float64, device=n.device)
    cdf = torch.zeros_like(out)
    log_total = log_comb(n, m)
    for h in range(int(t.max())):
        hh = torch.full_like(n, h)
        log_p = log_comb(r, hh) + log_comb(n - r, m - hh) - log_total
        cdf += torch.where(torch.isfinite(log_p), torch.exp(log_p), torch.zeros_like(log_p))
        out += torch.where(hh < t, (1 - cdf).clamp_min(0), torch.zeros_like(out))
    return out
