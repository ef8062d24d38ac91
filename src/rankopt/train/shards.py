"""Multi-process evaluation by shards: every item is embedded once, every query counted once.

Each process embeds its contiguous shard of an evaluation set (``ShardSampler``: no padding, no
repeats, unlike a DistributedSampler). The shards are gathered *with their indices* so every process
holds the whole gallery in dataset order; each process then ranks only its own queries against it
(the query removed by index in leave-one-out evaluation) and the per-query values are gathered back
in query order and averaged once — the numbers a single process computes, whatever the number of
processes. torch.distributed with any backend (gloo on CPU, NCCL on GPU); without a process group
everything runs locally.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from rankopt.collectives import gather_in_order, shard_bounds, world
from rankopt.metrics.evaluate import PerQueryResult, aggregate, evaluate_per_query
from rankopt.metrics.names import parse_metrics

__all__ = ["ShardSampler", "gather_in_order", "evaluate_shards", "world"]


class ShardSampler(Sampler[int]):
    """The indices of one process's contiguous shard of ``n`` items (shards differ by at most one item)."""

    def __init__(self, n: int, num_replicas: int = 1, rank: int = 0) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside 0..{num_replicas - 1}")
        self.indices = list(range(*shard_bounds(n, num_replicas, rank)))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def evaluate_shards(
    queries: torch.Tensor,
    query_labels: torch.Tensor,
    query_index: torch.Tensor,
    n_queries: int,
    gallery: tuple[torch.Tensor, torch.Tensor, torch.Tensor, int] | None = None,
    *,
    metrics: Sequence[str],
    no_positive: str = "exclude",
    per_query: bool = False,
    **options,
) -> dict[str, float] | tuple[dict[str, float], PerQueryResult]:
    """Mean metrics of an evaluation set split over processes.

    queries, query_labels, query_index: this process's shard (item ``query_index[i]`` of ``n_queries``).
    gallery: None for leave-one-out (the queries are the gallery), else this process's shard of a
    separate gallery as (embeddings, labels, index, size). ``options`` go to evaluate_per_query.
    per_query=True also returns every query's values, in query order (the same on every process).
    """
    if gallery is None:
        g_emb = gather_in_order(queries, query_index, n_queries)
        g_lab = gather_in_order(query_labels, query_index, n_queries)
        own = query_index
    else:
        g_emb = gather_in_order(gallery[0], gallery[2], gallery[3])
        g_lab = gather_in_order(gallery[1], gallery[2], gallery[3])
        own = None
    names = [spec.name for spec in parse_metrics(list(metrics))]
    if len(queries):
        local = evaluate_per_query(queries, query_labels, g_emb, g_lab, metrics=names, query_index=own, **options)
        values = torch.from_numpy(np.stack([local.values[n] for n in names], axis=1))
        has = torch.from_numpy(np.stack([local.has_relevant[n] for n in names], axis=1))
    else:  # more processes than queries: this one ranks nothing but still takes part in the gathers
        values = torch.empty(0, len(names), dtype=torch.float64)
        has = torch.empty(0, len(names), dtype=torch.bool)
    values = gather_in_order(values, query_index, n_queries)
    has = gather_in_order(has.to(torch.uint8), query_index, n_queries).bool()
    n_levels = g_lab.shape[1] if g_lab.ndim == 2 else 1
    n_ranked = g_emb.shape[0] - (1 if gallery is None else 0)
    result = PerQueryResult(
        {k: values[:, j].numpy() for j, k in enumerate(names)},
        {k: has[:, j].numpy() for j, k in enumerate(names)},
        n_levels,
        n_ranked,
    )
    summary = aggregate(result, no_positive)
    return (summary, result) if per_query else summary
