"""``evaluate``: embeddings and labels in, ranking metrics out, streamed in query chunks.

For each block of queries the gallery is scored (``rankopt.search``) and turned into a
:class:`Ranking` of the items that carry relevance, with their tie groups; every metric is computed on
it. Metrics that read a prefix take a top-k that follows ties across the cut. Whole-list metrics (AP,
MRR, NDCG, H-AP) sort no row: a relevant item's position is the count of items scored above it and
tied with it — on a label tree the relevant items are listed by label, and the counts cost 2P passes
over the row (P relevant items) or a binary search per item when P is large. The memory of a block is
bounded by ``memory_budget``; nothing of size Q × G is kept.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rankopt.metrics.names import KINDS, MetricSpec, parse_metrics
from rankopt.metrics.ranking import TIES, Ranking, ranking_from_kept, ranking_from_prefix, ranking_from_scores
from rankopt.relevance import LabelGroups, check_tree, gathered_levels, is_tree, level_counts, levels
from rankopt.search import Search, check_query_gallery_labels, prepare_search, rows_per_chunk
from rankopt.validation import check_choice

__all__ = ["evaluate", "evaluate_per_query", "PerQueryResult", "default_metrics", "NO_POSITIVE"]

log = logging.getLogger(__name__)

NO_POSITIVE = ("exclude", "zero", "error")
_FULL_BYTES_PER_CELL = 32  # scores, levels, masked scores, and the placements of each score among the kept ones
_PREFIX_BYTES_PER_CELL = 12  # scores + top-k


def default_metrics(n_levels: int) -> list[str]:
    names = ["hit@1", "hit@10", "map@r", "r-precision", "ap", "mrr", "ndcg"]
    if n_levels > 1:
        names += ["hap", "asi"] + [f"ap/level{lvl}" for lvl in range(1, n_levels)]
    return names


@dataclass
class PerQueryResult:
    """Per-query values (NaN where the query has no relevant item for that metric)."""

    values: dict[str, np.ndarray]
    has_relevant: dict[str, np.ndarray]
    n_levels: int
    n_ranked: int
    # how "no relevant item" reads for these queries (embeddings: labels; score matrices: relevance rows)
    absent: str = "every query's label is absent from the gallery"

    @property
    def n_queries(self) -> int:
        return len(next(iter(self.values.values())))

    def write_csv(self, path) -> None:
        """One row per query (its index, then each metric; empty where it has no relevant item), atomically."""
        import csv
        import io

        from rankopt.atomic import atomic_write_text

        names = list(self.values)
        out = io.StringIO(newline="")
        w = csv.writer(out)
        w.writerow(["query"] + names)
        for i in range(self.n_queries):
            w.writerow([i] + ["" if np.isnan(self.values[n][i]) else f"{self.values[n][i]:.10g}" for n in names])
        atomic_write_text(path, out.getvalue())


def evaluate_per_query(
    queries: Any,
    query_labels: Any,
    gallery: Any | None = None,
    gallery_labels: Any | None = None,
    *,
    metrics: str | Sequence[str] | None = None,
    ties: str = "expected",
    similarity: str = "cosine",
    device: str | torch.device | None = None,
    backend: str = "torch",
    memory_budget: int = 1 << 30,
    hap_alpha: float = 1.0,
    query_index: Any | None = None,
    ref_includes_query: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> PerQueryResult:
    """Every requested metric for every query. Arguments as :func:`evaluate`; ``query_index`` (with a
    gallery): each query's own row in the gallery, removed from its ranking by index (a shard of a
    leave-one-out evaluation). ``progress(done, total)`` is called after every block of queries."""
    check_choice(ties, TIES, "ties")
    if ref_includes_query:
        if gallery is None:
            raise ValueError("ref_includes_query=True needs the gallery (reference) whose first rows are the queries")
        if query_index is not None:
            raise ValueError("give ref_includes_query or query_index, not both")
        query_index = "leading"
    search = prepare_search(
        queries, gallery, similarity=similarity, device=device, backend=backend, query_index=query_index
    )
    if gallery is not None and query_index is None:
        _warn_if_gallery_is_queries(search)
    q_labels, g_labels = check_query_gallery_labels(search, query_labels, gallery_labels)
    n_levels = q_labels.shape[1]
    specs = parse_metrics(default_metrics(n_levels) if metrics is None else metrics)
    check_specs(specs, n_levels, search.n_ranked, search.backend)
    hierarchical = [s.name for s in specs if s.kind in ("hap", "asi")]
    if hierarchical and n_levels > 1:  # H-AP's relevance and ASI read the labels as a hierarchy
        check_tree(torch.cat([q_labels, g_labels]).cpu(), f"{', '.join(hierarchical)}")
    if search.n_ranked < 1:
        raise ValueError("the gallery has a single item, which is the query itself: nothing to rank")

    counts = level_counts(q_labels, g_labels, queries_in_gallery=search.self_index is not None)  # (Q, L+1)
    full = any(KINDS[s.kind].full_list for s in specs)
    per_cell = _FULL_BYTES_PER_CELL if full else _PREFIX_BYTES_PER_CELL
    step = rows_per_chunk(memory_budget, search.n_gallery, per_cell)
    groups = None
    if full and search.backend == "torch" and is_tree(torch.cat([q_labels, g_labels])):
        # the items a query ranks with level >= 1 are those of its coarsest label: listed, not searched for
        groups = LabelGroups(g_labels[:, -1])
    n_q = search.n_queries
    values = {s.name: np.empty(n_q, dtype=np.float64) for s in specs}
    log.debug("evaluating %d queries against %d items in chunks of %d", n_q, search.n_gallery, step)
    for start in range(0, n_q, step):
        stop = min(start + step, n_q)
        c = counts[start:stop]
        depth = max(int(s.depth(c, n_levels, search.n_ranked).max()) for s in specs)
        ranking = _rank_block(search, q_labels, g_labels, start, stop, depth, c, ties, groups)
        for s in specs:
            values[s.name][start:stop] = s.compute(ranking, hap_alpha).cpu().numpy()
        if progress is not None:
            progress(stop, n_q)
    has_rel = {s.name: s.has_relevant(counts, n_levels).cpu().numpy() for s in specs}
    for s in specs:
        values[s.name][~has_rel[s.name]] = np.nan
    return PerQueryResult(values, has_rel, n_levels, search.n_ranked)


def evaluate(
    queries: Any,
    query_labels: Any,
    gallery: Any | None = None,
    gallery_labels: Any | None = None,
    *,
    metrics: str | Sequence[str] | None = None,
    ties: str = "expected",
    no_positive: str = "exclude",
    similarity: str = "cosine",
    device: str | torch.device | None = None,
    backend: str = "torch",
    memory_budget: int = 1 << 30,
    hap_alpha: float = 1.0,
    ref_includes_query: bool = False,
) -> dict[str, float | int | str]:
    """Mean ranking metrics of queries against a gallery.

    queries: (Q, d) float embeddings; query_labels: (Q,) or (Q, L) int, column 0 the finest level.
    gallery / gallery_labels: the items to rank; None means the queries are the gallery, each query
    then removed from its own ranking by index. ref_includes_query=True (pytorch-metric-learning's
    argument): the first Q gallery rows are the queries (checked), each removed from its own ranking
    — so ``evaluate(q, ql, q, ql, ref_includes_query=True)`` equals ``evaluate(q, ql)``. A gallery
    equal to the queries without it warns: every query would retrieve itself first.
    metrics: names (see :mod:`rankopt.metrics.names`) or a comma-separated string; None picks
    hit@1, hit@10, map@r, r-precision, ap, mrr, ndcg (+ hap, asi and per-level AP on hierarchies).
    ties: "expected" (exact expectation over random orders of tied scores; results never depend on
    input order), "pessimistic" (relevant items last within a tie) or "optimistic".
    no_positive: what a query without any relevant item does: "exclude" it from that metric's mean
    (counted in ``n_excluded``), score it "zero", or raise an "error".
    similarity: "cosine" (default), "dot" or "euclidean". device: where to compute (default: the
    device of ``queries``). backend: "torch" or "faiss" (top-k metrics only). memory_budget: bytes a
    query block may use. hap_alpha: α of the "pop" relevance of H-AP.

    Returns each metric under the name it was requested with, plus ``n_queries`` and
    ``n_excluded``: the queries left out of at least one metric's mean (a metric that left out a
    different number adds ``n_excluded/<metric>``), and ``similarity``, the score that ranked them
    (pytorch-metric-learning ranks by L2 distance on the raw embeddings: similarity="euclidean").
    """
    check_choice(no_positive, NO_POSITIVE, "no_positive")
    result = evaluate_per_query(
        queries,
        query_labels,
        gallery,
        gallery_labels,
        metrics=metrics,
        ties=ties,
        similarity=similarity,
        device=device,
        backend=backend,
        memory_budget=memory_budget,
        hap_alpha=hap_alpha,
        ref_includes_query=ref_includes_query,
    )
    return {**aggregate(result, no_positive), "similarity": similarity}


def aggregate(result: PerQueryResult, no_positive: str = "exclude") -> dict[str, float]:
    """Mean of each metric over queries, with the no-positive policy applied."""
    out: dict[str, float] = {}
    excluded: dict[str, int] = {}
    for name, vals in result.values.items():
        has = result.has_relevant[name]
        missing = int((~has).sum())
        if missing and no_positive == "error":
            first = int(np.flatnonzero(~has)[0])
            raise ValueError(
                f"{missing} of {len(has)} queries have no relevant item for {name!r} (first: query {first}); "
                "use no_positive='exclude' or 'zero' to score them"
            )
        if no_positive == "zero":
            out[name] = float(np.where(has, vals, 0.0).mean())
        else:
            if missing == len(has):
                raise ValueError(f"no query has a relevant item for {name!r}: {result.absent}")
            out[name] = float(vals[has].mean())
        excluded[name] = missing if no_positive == "exclude" else 0
    out["n_queries"] = result.n_queries
    if no_positive == "exclude":
        any_missing = np.zeros(result.n_queries, dtype=bool)
        for has in result.has_relevant.values():
            any_missing |= ~has
        out["n_excluded"] = int(any_missing.sum())
        for name, count in excluded.items():
            if count != out["n_excluded"]:
                out[f"n_excluded/{name}"] = count
    else:
        out["n_excluded"] = 0
    return out


def _warn_if_gallery_is_queries(search: Search) -> None:
    q, g = search.queries, search.gallery
    if q.shape == g.shape and (q.data_ptr() == g.data_ptr() or torch.equal(q, g)):
        warnings.warn(
            "the gallery equals the queries but was passed as a separate gallery: every query will retrieve "
            "itself at rank 1. Pass gallery=None (or ref_includes_query=True) to remove each query from its "
            "own ranking",
            UserWarning,
            stacklevel=4,
        )


def warn_k_beyond(specs: list[MetricSpec], n_ranked: int, what: str = "items each query ranks") -> None:
    """One warning naming the metrics whose cut-off is beyond the ranked list (they read it whole)."""
    beyond = [s.name for s in specs if s.k is not None and s.k > n_ranked]
    if beyond:
        warnings.warn(
            f"{', '.join(beyond)}: k beyond the {n_ranked} {what}; the positions past the list count as "
            "non-relevant (as trec_eval, ranx and torchmetrics pad), so p@k still divides by k",
            UserWarning,
            stacklevel=3,
        )


def check_specs(specs: list[MetricSpec], n_levels: int, n_ranked: int, backend: str = "torch") -> None:
    """Refuse, by name, a metric the evaluation cannot give: a level beyond the labels, or a whole-list
    metric on the faiss backend; warn once of cut-offs beyond the ranked list."""
    for s in specs:
        if s.level is not None and s.level > n_levels:
            raise ValueError(f"metric {s.name!r}: level {s.level} but the labels have {n_levels} column(s)")
        if backend == "faiss" and KINDS[s.kind].full_list:
            raise ValueError(
                f"metric {s.name!r} needs the full ranking, which the faiss backend does not produce; "
                "use backend='torch' (exact, chunked) or top-k metrics (hit@k, p@k, recall@k, map@r, "
                "r-precision, ndcg@k, asi)"
            )
    warn_k_beyond(specs, n_ranked)


def _rank_block(
    search: Search,
    q_labels: torch.Tensor,
    g_labels: torch.Tensor,
    start: int,
    stop: int,
    depth: int,
    counts: torch.Tensor,
    ties: str,
    groups: LabelGroups | None = None,
) -> Ranking:
    """The Ranking of queries[start:stop], deep enough for ``depth`` positions. ``groups``: the gallery
    grouped by its coarsest label, on a label tree — the relevant items are then gathered by label."""
    n_levels = q_labels.shape[1]
    if search.backend == "torch" and 4 * depth >= search.n_ranked:
        scores = search.scores(start, stop)
        if groups is not None:
            own = None if search.self_index is None else search.self_index[start:stop]
            index, valid, lv = groups.relevant(q_labels[start:stop], g_labels, exclude=own)
            values = scores.gather(1, index).masked_fill(~valid, float("-inf"))
            return ranking_from_kept(scores, values, lv, counts, n_levels, search.n_ranked, ties)
        lv = levels(q_labels[start:stop], g_labels)  # (Qc, G)
        if search.self_index is not None:
            lv[torch.arange(stop - start, device=lv.device), search.self_index[start:stop]] = 0
        return ranking_from_scores(scores, lv, counts, n_levels, search.n_ranked, ties)
    values, indices = _ranked_prefix(search, start, stop, depth)
    lv = gathered_levels(q_labels[start:stop], g_labels, indices)
    return ranking_from_prefix(values, lv, counts, n_levels, search.n_ranked, ties)


def _ranked_prefix(search: Search, start: int, stop: int, depth: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores and gallery indices of the leading positions of each query's ranking (see ranked_prefix)."""
    if search.backend == "faiss":
        return ranked_prefix(lambda k: search.topk(start, stop, k), search.n_ranked, depth)
    return ranked_prefix(None, search.n_ranked, depth, search.scores(start, stop))


def ranked_prefix(
    top: Callable[[int], tuple[torch.Tensor, torch.Tensor]] | None,
    n: int,
    depth: int,
    scores: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The leading positions of each row's ranking — values and indices, sorted decreasing — long
    enough that the tie group holding position ``depth`` is complete (a tie straddling the cut is
    followed). ``top(k)`` gives the k best of each row; None: top-k of ``scores`` (Q, n), which also
    tells how deep a tie reaches."""
    if top is None:
        top = lambda k: torch.topk(scores, k, dim=1, largest=True, sorted=True)
    k = min(n, depth + 16)
    while True:
        v, i = top(k)
        if k == n or bool((v[:, k - 1] < v[:, depth - 1]).all()):
            return v, i
        # deeper: at least past every item tied with position depth (known when the scores are at hand)
        need = int((scores >= v[:, depth - 1 : depth]).sum(dim=1).max()) + 1 if scores is not None else 0
        k = min(n, max(need, 2 * k))
