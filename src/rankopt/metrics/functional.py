"""Metrics from a score matrix you already have (like torchmetrics' functional API, but exact under ties)."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from rankopt.metrics.names import parse_metrics
from rankopt.metrics.ranking import TIES, ranking_from_scores
from rankopt.validation import as_tensor, check_choice

__all__ = ["rank_metrics"]


def rank_metrics(
    scores: Any,
    relevance: Any,
    metrics: str | Sequence[str],
    *,
    ties: str = "expected",
    n_levels: int | None = None,
    hap_alpha: float = 1.0,
) -> dict[str, torch.Tensor]:
    """Per-query metrics of each row of ``scores`` (Q, G) given integer ``relevance`` (Q, G).

    relevance is the level of each item (0 = irrelevant .. L); binary metrics count level >= L as
    relevant unless the name carries ``/levelℓ``; NDCG uses gains 2^level − 1. n_levels defaults to
    the largest level present. Returns (Q,) float64 tensors; NaN where a query has no relevant item.
    """
    check_choice(ties, TIES, "ties")
    s = as_tensor(scores, "scores")
    rel = as_tensor(relevance, "relevance")
    if s.ndim == 1:
        s, rel = s.unsqueeze(0), rel.unsqueeze(0)
    if s.shape != rel.shape or s.ndim != 2:
        raise ValueError(f"scores {tuple(s.shape)} and relevance {tuple(rel.shape)} must both be (Q, G)")
    if torch.is_floating_point(rel) or rel.dtype == torch.bool:
        raise ValueError(f"relevance must be integer levels (0 = irrelevant); got dtype {rel.dtype}")
    if not torch.is_floating_point(s):
        s = s.to(torch.float64)
    if not bool(torch.isfinite(s).all()):
        raise ValueError("scores contain NaN or inf")
    rel = rel.to(torch.int64)
    if bool((rel < 0).any()):
        raise ValueError("relevance levels must be >= 0")
    top = int(rel.max())
    n_levels = max(1, top) if n_levels is None else n_levels
    if top > n_levels:
        raise ValueError(f"relevance has level {top} above n_levels={n_levels}")
    specs = parse_metrics(metrics)
    n_ranked = s.shape[1]
    for spec in specs:
        if spec.k is not None and spec.k > n_ranked:
            raise ValueError(f"metric {spec.name!r}: k={spec.k} is larger than the {n_ranked} items per row")
        if spec.level is not None and spec.level > n_levels:
            raise ValueError(f"metric {spec.name!r}: level {spec.level} above n_levels={n_levels}")
    offsets = torch.arange(s.shape[0], device=rel.device).unsqueeze(1) * (n_levels + 1)
    counts = torch.bincount((rel + offsets).flatten(), minlength=s.shape[0] * (n_levels + 1)).view(-1, n_levels + 1)
    ranking = ranking_from_scores(s, rel, counts, n_levels, n_ranked, ties)
    out = {}
    for spec in specs:
        v = spec.compute(ranking, hap_alpha)
        out[spec.name] = torch.where(spec.has_relevant(counts, n_levels), v, torch.full_like(v, float("nan")))
    return out
