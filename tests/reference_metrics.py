"""Plain-Python reference implementations, written straight from the formulas, for the tests.

One query; ``order`` is the list of item levels in ranked order (0 = unrelated .. L = same finest
label). Every function loops; nothing here is shared with the library.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter


def ap(order, level):
    rel = [lv >= level for lv in order]
    r = sum(rel)
    hits, total = 0, 0.0
    for p, is_rel in enumerate(rel, start=1):
        if is_rel:
            hits += 1
            total += hits / p
    return total / r


def map_at_r(order, level):
    rel = [lv >= level for lv in order]
    r = sum(rel)
    hits, total = 0, 0.0
    for p, is_rel in enumerate(rel[:r], start=1):
        if is_rel:
            hits += 1
            total += hits / p
    return total / r


def r_precision(order, level):
    rel = [lv >= level for lv in order]
    r = sum(rel)
    return sum(rel[:r]) / r


def hit_at_k(order, level, k):
    return float(any(lv >= level for lv in order[:k]))


def p_at_k(order, level, k):
    return sum(lv >= level for lv in order[:k]) / k


def recall_at_k(order, level, k):
    return sum(lv >= level for lv in order[:k]) / sum(lv >= level for lv in order)


def mrr(order, level):
    for p, lv in enumerate(order, start=1):
        if lv >= level:
            return 1 / p
    return 0.0


def mrr_at_k(order, level, k):
    for p, lv in enumerate(order[:k], start=1):
        if lv >= level:
            return 1 / p
    return 0.0


def map_at_k(order, level, k):
    """RecBole's MAP@K: the precision at each relevant position of the top k, summed, over min(k, R)."""
    r = sum(lv >= level for lv in order)
    hits, total = 0, 0.0
    for p, lv in enumerate(order[:k], start=1):
        if lv >= level:
            hits += 1
            total += hits / p
    return total / min(k, r)


def ndcg(order, k=None):
    k = len(order) if k is None else k
    dcg = sum((2**lv - 1) / math.log2(p + 1) for p, lv in enumerate(order[:k], start=1))
    ideal = sorted(order, reverse=True)
    idcg = sum((2**lv - 1) / math.log2(p + 1) for p, lv in enumerate(ideal[:k], start=1))
    return dcg / idcg if idcg > 0 else 0.0


def hap(order, n_levels, alpha=1.0):
    counts = Counter(order)
    counts[n_levels] += 1  # the query itself is counted (HAPPIER "pop" relevance)

    def rel(lv):
        return 0.0 if lv == 0 else (lv / n_levels) ** alpha / counts[lv]

    rels = [rel(lv) for lv in order]
    total = 0.0
    for p, rk in enumerate(rels):
        if rk <= 0:
            continue
        h_rank = rk + sum(min(rj, rk) for rj in rels[:p])
        total += h_rank / (p + 1)
    return total / sum(rels)


def asi(order):
    ideal = sorted(order, reverse=True)
    r = sum(lv > 0 for lv in order)
    total = 0.0
    for n in range(1, r + 1):
        a, b = Counter(order[:n]), Counter(ideal[:n])
        total += sum(min(a[v], b[v]) for v in set(a) | set(b) if v > 0) / n
    return total / r


def tie_orders(scores, levels, ties):
    """All rankings an order-breaking of ties can produce (expected), or the extreme one."""
    groups = []
    for s in sorted(set(scores), reverse=True):
        groups.append([lv for sc, lv in zip(scores, levels) if sc == s])
    if ties == "pessimistic":
        return [[lv for g in groups for lv in sorted(g)]]
    if ties == "optimistic":
        return [[lv for g in groups for lv in sorted(g, reverse=True)]]
    per_group = [list(itertools.permutations(g)) for g in groups]
    return [[lv for g in combo for lv in g] for combo in itertools.product(*per_group)]


def expected(fn, scores, levels, ties="expected", **kw):
    orders = tie_orders(scores, levels, ties)
    return sum(fn(o, **kw) for o in orders) / len(orders)
