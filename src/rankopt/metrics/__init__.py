"""Exact, tie-aware ranking metrics: per-query functions on rankings, and ``evaluate`` over embeddings."""

from rankopt.metrics.evaluate import (
    NO_POSITIVE,
    PerQueryResult,
    aggregate,
    default_metrics,
    evaluate,
    evaluate_per_query,
)
from rankopt.metrics.functional import rank_metrics
from rankopt.metrics.names import MetricSpec, parse_metric, parse_metrics
from rankopt.metrics.ranking import TIES, Ranking, ranking_from_prefix, ranking_from_scores


def __getattr__(name: str):
    if name == "RetrievalMetrics":  # torchmetrics is optional: imported when asked for
        from rankopt.metrics.streaming import RetrievalMetrics

        return RetrievalMetrics
    raise AttributeError(f"module 'rankopt.metrics' has no attribute {name!r}")


__all__ = [
    "RetrievalMetrics",
    "evaluate",
    "evaluate_per_query",
    "aggregate",
    "default_metrics",
    "rank_metrics",
    "PerQueryResult",
    "MetricSpec",
    "parse_metric",
    "parse_metrics",
    "Ranking",
    "ranking_from_scores",
    "ranking_from_prefix",
    "TIES",
    "NO_POSITIVE",
]
