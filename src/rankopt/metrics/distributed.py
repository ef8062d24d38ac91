"""Exact evaluation of a gallery sharded across processes (torch.distributed: gloo on CPU, NCCL on
GPU, launched by torchrun on one machine or many).

Every process holds a contiguous shard of the gallery's rows — never the whole gallery — and the
labels of every item (a few bytes each). For a block of queries each process scores its shard; the
relevant items of each query are listed by label (the gallery labels must form a tree: flat labels
or a proper hierarchy), their scores are summed over processes (each is computed by the one process
holding the item, zero elsewhere, so the sum is exact), and each process counts, in its shard, the
items scored above and tied with every relevant item; those counts summed over processes are the
exact positions of the relevant items in the whole ranking. Ties across shard boundaries are
therefore counted like any other, and every metric — prefix or whole-list — is what one process
holding everything computes. Per block the processes exchange the query embeddings (Q_b × d) and
O(Q_b × relevant items) numbers; the gallery never moves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist

from rankopt.collectives import all_sizes, gather_in_order
from rankopt.metrics.evaluate import NO_POSITIVE, PerQueryResult, aggregate, check_specs, default_metrics
from rankopt.metrics.names import parse_metrics
from rankopt.metrics.ranking import TIES, ranking_from_kept
from rankopt.relevance import LabelGroups, is_tree, level_counts
from rankopt.search import prepare_search, rows_per_chunk
from rankopt.validation import check_choice, check_labels, check_same_length

__all__ = ["evaluate_distributed"]

_BYTES_PER_CELL = 12  # scores and one row of comparison flags


def evaluate_distributed(
    gallery: Any,
    gallery_labels: Any,
    queries: Any | None = None,
    query_labels: Any | None = None,
    *,
    metrics: str | Sequence[str] | None = None,
    ties: str = "expected",
    no_positive: str = "exclude",
    similarity: str = "cosine",
    device: str | torch.device | None = None,
    memory_budget: int = 1 << 30,
    hap_alpha: float = 1.0,
    per_query: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, float] | tuple[dict[str, float], PerQueryResult]:
    """Mean metrics of queries against a gallery whose rows are split over the processes of the
    default process group, equal to :func:`rankopt.metrics.evaluate` on the whole.

    gallery / gallery_labels: this process's contiguous shard of rows, shards in rank order (see
    :func:`rankopt.collectives.shard_bounds`). queries / query_labels: this process's shard of a separate query set, or
    None for leave-one-out (every gallery item a query, removed from its own ranking). Every process
    returns the same result; other arguments as :func:`~rankopt.metrics.evaluate`.
    """
    check_choice(ties, TIES, "ties")
    check_choice(no_positive, NO_POSITIVE, "no_positive")
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("evaluate_distributed needs a torch.distributed process group (launch with torchrun)")
    rank = dist.get_rank()
    shard = prepare_search(gallery, similarity=similarity, device=device)  # this shard, normalised if cosine
    g_emb = shard.queries  # prepared as a leave-one-out search: its rows, moved and normalised
    dev = g_emb.device
    g_lab_local = check_labels(gallery_labels, "gallery_labels").to(dev)
    check_same_length(g_emb, g_lab_local, "gallery", "gallery_labels")
    g_offsets, g_lab = _gather_rows(g_lab_local)
    g_start, g_stop = g_offsets[rank], g_offsets[rank + 1]
    if queries is None:
        if query_labels is not None:
            raise ValueError("query_labels was given without queries")
        q_local, q_offsets, q_lab = g_emb, g_offsets, g_lab
    else:
        q_local = prepare_search(queries, similarity=similarity, device=dev).queries
        if q_local.shape[1] != g_emb.shape[1]:
            raise ValueError(f"queries have dimension {q_local.shape[1]} but the gallery has {g_emb.shape[1]}")
        q_lab_local = check_labels(query_labels, "query_labels").to(dev)
        check_same_length(q_local, q_lab_local, "queries", "query_labels")
        q_offsets, q_lab = _gather_rows(q_lab_local)
    if q_lab.shape[1] != g_lab.shape[1]:
        raise ValueError(f"query labels have {q_lab.shape[1]} columns but gallery labels have {g_lab.shape[1]}")
    n_q, n_g, n_levels = q_offsets[-1], g_offsets[-1], g_lab.shape[1]
    leave_one_out = queries is None
    n_ranked = n_g - (1 if leave_one_out else 0)
    if n_ranked < 1:
        raise ValueError("the gallery has a single item, which is the query itself: nothing to rank")
    if not is_tree(torch.cat([q_lab, g_lab])):
        raise ValueError(
            "distributed evaluation lists each query's relevant items by label and needs labels that "
            "form a tree (flat labels, or each label with a single parent in the next column)"
        )
    specs = parse_metrics(default_metrics(n_levels) if metrics is None else metrics)
    check_specs(specs, n_levels, n_ranked)
    counts = level_counts(q_lab, g_lab, queries_in_gallery=leave_one_out)
    groups = LabelGroups(g_lab[:, -1])
    sqnorm = (g_emb * g_emb).sum(dim=1) if similarity == "euclidean" else None
    step = rows_per_chunk(memory_budget, max(1, g_stop - g_start), _BYTES_PER_CELL)
    step = int(_agree_min(step, dev))
    values = {s.name: torch.empty(n_q, dtype=torch.float64) for s in specs}
    for start in range(0, n_q, step):
        stop = min(start + step, n_q)
        q_block = _rows_from_owners(q_local, q_offsets[rank], start, stop)
        scores = q_block @ g_emb.T  # (Qb, G_r)
        if sqnorm is not None:
            scores = 2 * scores - sqnorm.unsqueeze(0)
        own = torch.arange(start, stop, device=dev)
        if leave_one_out:  # each query's own row, where this process holds it
            mine = (own >= g_start) & (own < g_stop)
            scores[mine.nonzero().squeeze(1), own[mine] - g_start] = float("-inf")
        index, valid, lv = groups.relevant(q_lab[start:stop], g_lab, exclude=own if leave_one_out else None)
        here = valid & (index >= g_start) & (index < g_stop)
        local = (index - g_start).clamp(0, max(0, g_stop - g_start - 1))
        gathered = (
            scores.gather(1, local) if scores.shape[1] else torch.zeros(local.shape, dtype=scores.dtype, device=dev)
        )
        # each relevant score from the one process holding the item, zero elsewhere: the sum is that score exactly
        kept = torch.where(here, gathered, torch.zeros((), dtype=scores.dtype, device=dev))
        dist.all_reduce(kept)
        ranking = ranking_from_kept(
            scores,
            kept.masked_fill(~valid, float("-inf")),
            lv,
            counts[start:stop],
            n_levels,
            n_ranked,
            ties,
            combine=_summed_over_processes,
        )
        for s in specs:
            values[s.name][start:stop] = s.compute(ranking, hap_alpha).cpu()
        if progress is not None:
            progress(stop, n_q)
    has = {s.name: s.has_relevant(counts, n_levels).cpu().numpy() for s in specs}
    result = PerQueryResult({n: v.numpy() for n, v in values.items()}, has, n_levels, n_ranked)
    for s in specs:
        result.values[s.name][~has[s.name]] = float("nan")
    summary = aggregate(result, no_positive)
    return (summary, result) if per_query else summary


def _gather_rows(local: torch.Tensor) -> tuple[list[int], torch.Tensor]:
    """Row offsets of every process's shard and the concatenation of the shards (small tensors: labels)."""
    offsets = [0]
    for n in all_sizes(local.shape[0], local):
        offsets.append(offsets[-1] + n)
    start = offsets[dist.get_rank()]
    index = torch.arange(start, start + local.shape[0], device=local.device)
    return offsets, gather_in_order(local, index, offsets[-1])


def _summed_over_processes(above: torch.Tensor, tied: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    both = torch.stack([above, tied])
    dist.all_reduce(both)
    return both[0], both[1]


def _rows_from_owners(local: torch.Tensor, offset: int, start: int, stop: int) -> torch.Tensor:
    """Rows [start, stop) of a row-sharded matrix, on every process: each owner fills its rows, the
    rest are zeros, and a sum over processes assembles them exactly."""
    block = torch.zeros(stop - start, local.shape[1], dtype=local.dtype, device=local.device)
    lo, hi = max(start, offset), min(stop, offset + local.shape[0])
    if lo < hi:
        block[lo - start : hi - start] = local[lo - offset : hi - offset]
    dist.all_reduce(block)
    return block


def _agree_min(value: int, device: torch.device) -> int:
    """The smallest of a number over processes, so that all take the same query blocks."""
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t)
