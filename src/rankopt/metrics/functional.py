"""Metrics from a score matrix you already have (a recommender's users × items scores, a re-ranker's
output): like torchmetrics' functional API or RecBole's evaluator, but exact under ties.

Rows are processed in blocks sized from a memory budget; when every metric reads a prefix (hit@k,
recall@k, p@k, ndcg@k, mrr@k, map@k, map@r, r-precision) each block takes a top-k that follows ties
across the cut instead of sorting whole rows.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from rankopt.metrics.evaluate import NO_POSITIVE, PerQueryResult, aggregate, ranked_prefix, warn_k_beyond
from rankopt.metrics.names import KINDS, parse_metrics
from rankopt.metrics.ranking import TIES, ranking_from_prefix, ranking_from_scores
from rankopt.search import rows_per_chunk
from rankopt.validation import as_tensor, check_choice

__all__ = ["rank_metrics"]

_FULL_BYTES_PER_CELL = 40  # scores, levels, masked copies, the sort and its indices
_PREFIX_BYTES_PER_CELL = 24


def rank_metrics(
    scores: Any,
    relevance: Any,
    metrics: str | Sequence[str],
    *,
    mask: Any | None = None,
    ties: str = "expected",
    n_levels: int | None = None,
    hap_alpha: float = 1.0,
    reduce: str | None = None,
    no_positive: str = "exclude",
    memory_budget: int = 1 << 30,
) -> dict[str, torch.Tensor] | dict[str, float]:
    """Metrics of each row of ``scores`` (Q, G) given the ``relevance`` (Q, G) of its items.

    relevance: integer levels (0 = irrelevant .. L), bool, 0/1 floats, or a scipy.sparse matrix
    (read block by block). Binary metrics count level >= L as relevant unless the name carries
    ``/levelℓ`` (graded relevance, its levels not stated by n_levels, with a binary metric and no level
    warns: only the top level counts);
    NDCG uses gains 2^level − 1. n_levels defaults to the largest level present.

    Known items — a user's training interactions — are excluded from the ranking either by a score
    of ``-inf`` (RecBole's way) or by ``mask`` (Q, G; True = exclude; bool array, tensor or sparse):
    they rank after every real item and are never relevant (a relevant masked item is an error).

    reduce=None: (Q,) float64 tensors, NaN where a row has no relevant item. reduce="mean": the mean
    of each metric with ``no_positive`` ("exclude" | "zero" | "error") applied, plus ``n_queries`` and
    ``n_excluded``, as :func:`rankopt.metrics.evaluate` returns. ``r@k`` is refused here as ambiguous
    (hit@k or recall@k). memory_budget: bytes one block of rows may use.
    """
    check_choice(ties, TIES, "ties")
    if reduce not in (None, "mean"):
        raise ValueError(f"reduce must be None (per row) or 'mean'; got {reduce!r}")
    check_choice(no_positive, NO_POSITIVE, "no_positive")
    s = _scores(scores)
    rel_source = _relevance_source(relevance, s.shape)
    mask_source = None if mask is None else _relevance_source(mask, s.shape, name="mask", binary=True)
    n_rows, n_cols = s.shape
    top = int(max(rel_source.max_level(), 0))
    inferred = n_levels is None
    n_levels = max(1, top) if n_levels is None else n_levels
    if top > n_levels:
        raise ValueError(f"relevance has level {top} above n_levels={n_levels}")
    specs = parse_metrics(metrics, ambiguous_r=True)
    warn_k_beyond(specs, n_cols, "items per row")
    for spec in specs:
        if spec.level is not None and spec.level > n_levels:
            raise ValueError(f"metric {spec.name!r}: level {spec.level} above n_levels={n_levels}")
    top_only = [s_.name for s_ in specs if KINDS[s_.kind].binary and s_.level is None]
    if inferred and n_levels > 1 and top_only:  # ratings passed as relevance, most likely
        warnings.warn(
            f"relevance is graded (levels up to {n_levels}): {', '.join(top_only)} count only level {n_levels} as "
            f"relevant. Add /level1 (e.g. {top_only[0]}/level1) to count every level >= 1, or pass binary relevance",
            UserWarning,
            stacklevel=2,
        )
    full = any(KINDS[s_.kind].full_list for s_ in specs)
    step = rows_per_chunk(memory_budget, n_cols, _FULL_BYTES_PER_CELL if full else _PREFIX_BYTES_PER_CELL)
    values = {spec.name: torch.empty(n_rows, dtype=torch.float64) for spec in specs}
    has_rel = {spec.name: torch.empty(n_rows, dtype=torch.bool) for spec in specs}
    for start in range(0, n_rows, step):
        stop = min(start + step, n_rows)
        block = s[start:stop]
        rel = rel_source.rows(start, stop).to(block.device)
        if mask_source is not None:
            block = block.masked_fill(mask_source.rows(start, stop).to(block.device) > 0, float("-inf"))
        _check_masked_not_relevant(block, rel, start)
        offsets = torch.arange(stop - start, device=rel.device).unsqueeze(1) * (n_levels + 1)
        counts = torch.bincount((rel + offsets).flatten(), minlength=(stop - start) * (n_levels + 1)).view(
            -1, n_levels + 1
        )
        if full:
            ranking = ranking_from_scores(block, rel, counts, n_levels, n_cols, ties)
        else:
            depth = max(int(spec.depth(counts, n_levels, n_cols).max()) for spec in specs)
            v, i = ranked_prefix(None, n_cols, min(depth, n_cols), block)
            ranking = ranking_from_prefix(v, rel.gather(1, i), counts, n_levels, n_cols, ties)
        for spec in specs:
            values[spec.name][start:stop] = spec.compute(ranking, hap_alpha).cpu()
            has_rel[spec.name][start:stop] = spec.has_relevant(counts, n_levels).cpu()
    out = {
        name: torch.where(has_rel[name], v, torch.full_like(v, float("nan"))).to(s.device) for name, v in values.items()
    }
    if reduce is None:
        return out
    result = PerQueryResult(
        {n: v.cpu().numpy() for n, v in out.items()},
        {n: h.numpy() for n, h in has_rel.items()},
        n_levels,
        n_cols,
        absent="no row of relevance has a relevant item that is not masked",
    )
    return aggregate(result, no_positive)


def _scores(scores: Any) -> torch.Tensor:
    s = as_tensor(scores, "scores")
    if s.ndim == 1:
        s = s.unsqueeze(0)
    if s.ndim != 2 or s.shape[0] == 0 or s.shape[1] == 0:
        raise ValueError(f"scores must be a non-empty (Q, G) matrix; got shape {tuple(s.shape)}")
    if not torch.is_floating_point(s):
        s = s.to(torch.float64)
    if bool(torch.isnan(s).any()):
        row = int(torch.isnan(s).any(dim=1).nonzero()[0])
        raise ValueError(f"scores contain NaN (first in row {row})")
    if bool((s == float("inf")).any()):
        raise ValueError("scores contain +inf; known items to exclude take -inf (or pass mask=)")
    return s


class _RowSource:
    """A (Q, G) relevance or mask given dense or scipy.sparse, read as int64 blocks of rows."""

    def __init__(self, dense: torch.Tensor | None, sparse: Any | None) -> None:
        self.dense, self.sparse = dense, sparse

    def rows(self, start: int, stop: int) -> torch.Tensor:
        if self.sparse is not None:
            return torch.from_numpy(self.sparse[start:stop].toarray().astype(np.int64))
        return self.dense[start:stop]

    def max_level(self) -> int:
        if self.sparse is not None:
            return int(self.sparse.max()) if self.sparse.nnz else 0
        return int(self.dense.max())


def _relevance_source(x: Any, shape: torch.Size, name: str = "relevance", binary: bool = False) -> _RowSource:
    if hasattr(x, "tocsr") and hasattr(x, "nnz"):  # scipy.sparse: rows densified block by block
        csr = x.tocsr()
        if tuple(csr.shape) != tuple(shape):
            raise ValueError(f"{name} has shape {tuple(csr.shape)} but scores have {tuple(shape)}")
        data = csr.data
        _check_levels(torch.from_numpy(np.asarray(data)), name, binary)
        return _RowSource(None, csr)
    t = as_tensor(x, name)
    if t.ndim == 1:
        t = t.unsqueeze(0)
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(t.shape)} but scores have {tuple(shape)}")
    return _RowSource(_check_levels(t, name, binary), None)


def _check_levels(t: torch.Tensor, name: str, binary: bool) -> torch.Tensor:
    """int64 levels from bool, integer or integral float values; anything else is refused by name."""
    if t.dtype == torch.bool:
        return t.to(torch.int64)
    if torch.is_complex(t):
        raise ValueError(f"{name} must be real; got {t.dtype}")
    if torch.is_floating_point(t):
        bad = ~torch.isfinite(t) | (t != t.round())
        if bool(bad.any()):
            raise ValueError(
                f"{name} holds non-integer values (e.g. {float(t[bad][0])}): give levels 0, 1, 2 ... "
                "(0 = irrelevant), bool, or 0/1 floats; bin continuous ratings first"
            )
    t = t.to(torch.int64)
    if t.numel() and int(t.min()) < 0:
        raise ValueError(f"{name} levels must be >= 0 (0 = irrelevant); found {int(t.min())}")
    if binary and t.numel() and int(t.max()) > 1:
        raise ValueError(f"{name} must be bool or 0/1; found {int(t.max())}")
    return t


def _check_masked_not_relevant(block: torch.Tensor, rel: torch.Tensor, offset: int) -> None:
    bad = (block == float("-inf")) & (rel > 0)
    if bool(bad.any()):
        row, col = (int(v) for v in bad.nonzero()[0])
        raise ValueError(
            f"{int(bad.sum())} relevant items are masked (score -inf or mask=True), first at row {row + offset}, "
            f"column {col}: a masked item cannot be ranked. Unmask it (a known item that is also a test item stays "
            "rankable in rankopt's recommender evaluation) or remove it from the relevance"
        )
