"""Metric names as users type them, parsed once into specs, and the registry that computes them.

Names: ``ap``, ``map@r``, ``r-precision``, ``hit@k`` (alias ``r@k``: the metric-learning "Recall@K"),
``recall@k`` (hits in the top k / all relevant), ``p@k``, ``mrr``, ``mrr@k`` (0 when the first relevant item
is below k), ``map@k`` (RecBole's MAP@K: Σ_{p ≤ k} P@p·rel(p) / min(k, R)), ``ap@k`` (the same sum / R:
trec_eval's ``map_cut_k``, ranx's ``map@k``, ir-measures' ``AP@k``), ``ndcg``, ``ndcg@k`` (exponential gains
2^ℓ − 1: HAPPIER, ranx's ``ndcg_burges``), ``ndcg_lin``, ``ndcg_lin@k`` (linear gains ℓ: trec_eval, ranx's
``ndcg``, ir-measures, torchmetrics), ``hap``, ``asi``. trec_eval's names are accepted as written, with its
convention that every level >= 1 is relevant: ``map``, ``map_cut_k``, ``P_k``, ``recall_k``, ``ndcg_cut_k``,
``recip_rank``, ``Rprec`` (``ndcg`` alone keeps rankopt's meaning). A k beyond the ranked list reads it whole,
positions past it non-relevant (p@k still divides by k), as trec_eval, ranx and torchmetrics do; the
evaluations warn once. Peers' names are accepted and keep the name as the result key: ``hr@k`` (RecBole) =
``hit@k``, ``precision@k`` = ``p@k``, and pytorch-metric-learning's ``precision_at_1`` (= hit@1),
``r_precision``, ``mean_average_precision_at_r``, ``mean_average_precision`` (= ap: PML's with k=None) and
``mean_reciprocal_rank`` (= mrr). ``r@k`` is metric learning's Recall@K (= hit@k); where a reader may take it
for recall@k — score matrices of recommenders — it is refused as ambiguous (``ambiguous_r=True``). A binary
metric may name its relevance level: ``ap/level1`` counts as relevant every item sharing at least one label
column with the query (on a fine→coarse hierarchy: the coarsest label); without it the level is L, the same
finest label.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch

from rankopt.metrics import binary, graded, hierarchical
from rankopt.metrics.ranking import Ranking

__all__ = ["MetricSpec", "parse_metric", "parse_metrics", "Kind", "KINDS"]


class Kind(NamedTuple):
    takes_k: bool  # written name@k
    binary: bool  # has a relevance level (/levelN)
    full_list: bool  # reads the whole ranked list (no top-k shortcut)


KINDS: dict[str, Kind] = {
    "ap": Kind(takes_k=False, binary=True, full_list=True),
    "map@r": Kind(takes_k=False, binary=True, full_list=False),
    "r-precision": Kind(takes_k=False, binary=True, full_list=False),
    "hit": Kind(takes_k=True, binary=True, full_list=False),
    "recall": Kind(takes_k=True, binary=True, full_list=False),
    "p": Kind(takes_k=True, binary=True, full_list=False),
    "mrr": Kind(takes_k=False, binary=True, full_list=True),
    "mrr@k": Kind(takes_k=True, binary=True, full_list=False),
    "map@k": Kind(takes_k=True, binary=True, full_list=False),
    "ap@k": Kind(takes_k=True, binary=True, full_list=False),
    "ndcg": Kind(takes_k=False, binary=False, full_list=True),
    "ndcg@k": Kind(takes_k=True, binary=False, full_list=False),
    "ndcg_lin": Kind(takes_k=False, binary=False, full_list=True),
    "ndcg_lin@k": Kind(takes_k=True, binary=False, full_list=False),
    "hap": Kind(takes_k=False, binary=False, full_list=True),
    "asi": Kind(takes_k=False, binary=False, full_list=False),
}
_ALIASES = {
    "r": "hit",
    "hit": "hit",
    "hr": "hit",
    "recall": "recall",
    "p": "p",
    "precision": "p",
    "ndcg": "ndcg@k",
    "mrr": "mrr@k",
    "map": "map@k",
    "ap": "ap@k",
    "ndcg_lin": "ndcg_lin@k",
}
# trec_eval's measure names (lower-cased): their kind and whether they take a cut-off
_TREC = {
    "map": ("ap", False),
    "map_cut": ("ap@k", True),
    "p": ("p", True),
    "recall": ("recall", True),
    "ndcg_cut": ("ndcg_lin@k", True),
    "recip_rank": ("mrr", False),
    "rprec": ("r-precision", False),
}
_TREC_PATTERN = re.compile(r"^(?P<base>map_cut|p|recall|ndcg_cut)_(?P<k>\d+)$")
# pytorch-metric-learning's AccuracyCalculator names: (kind, k)
_PML_NAMES = {
    "precision_at_1": ("hit", 1),
    "r_precision": ("r-precision", None),
    "mean_average_precision_at_r": ("map@r", None),
    "mean_average_precision": ("ap", None),
    "mean_reciprocal_rank": ("mrr", None),
}
_EXAMPLES = [
    "ap",
    "map@r",
    "r-precision",
    "hit@1",
    "r@1",
    "hr@10",
    "recall@10",
    "p@10",
    "precision@10",
    "mrr",
    "mrr@10",
    "map@10",
    "ap@10",
    "ndcg",
    "ndcg@10",
    "ndcg_lin",
    "ndcg_lin@10",
    "map_cut_10",
    "P_10",
    "ndcg_cut_10",
    "recip_rank",
    "hap",
    "asi",
    *_PML_NAMES,
]


@dataclass(frozen=True)
class MetricSpec:
    name: str  # as the user typed it: the key of the result
    kind: str
    k: int | None = None
    level: int | None = None  # binary relevance level; None → L

    def resolved_level(self, n_levels: int) -> int:
        return n_levels if self.level is None else self.level

    def depth(self, ranking_counts: torch.Tensor, n_levels: int, n_ranked: int) -> torch.Tensor:
        """Per query, how many leading positions this metric reads: (Q,) int64."""
        q = ranking_counts.shape[0]
        if KINDS[self.kind].full_list:
            return torch.full((q,), n_ranked, dtype=torch.int64, device=ranking_counts.device)
        if self.k is not None:
            return torch.full((q,), min(self.k, n_ranked), dtype=torch.int64, device=ranking_counts.device)
        if self.kind == "asi":
            return ranking_counts[:, 1:].sum(dim=1).clamp_min(1)
        return ranking_counts[:, self.resolved_level(n_levels) :].sum(dim=1).clamp_min(1)

    def has_relevant(self, ranking_counts: torch.Tensor, n_levels: int) -> torch.Tensor:
        """(Q,) bool: the query has at least one relevant item for this metric."""
        level = self.resolved_level(n_levels) if KINDS[self.kind].binary else 1
        return ranking_counts[:, level:].sum(dim=1) > 0

    def compute(self, ranking: Ranking, hap_alpha: float = 1.0) -> torch.Tensor:
        lvl = self.resolved_level(ranking.n_levels)
        # a cut-off beyond the list reads it whole (the positions past it are not relevant)
        k = None if self.k is None else min(self.k, ranking.n_ranked)
        fn: Callable[[], torch.Tensor] = {
            "ap": lambda: binary.average_precision(ranking, lvl),
            "map@r": lambda: binary.map_at_r(ranking, lvl),
            "r-precision": lambda: binary.r_precision(ranking, lvl),
            "hit": lambda: binary.hit_at_k(ranking, lvl, k),
            "recall": lambda: binary.recall_at_k(ranking, lvl, k),
            "p": lambda: binary.precision_at_k(ranking, lvl, k) * (k / self.k),  # still ÷ the k asked for
            "mrr": lambda: binary.reciprocal_rank(ranking, lvl),
            "mrr@k": lambda: binary.reciprocal_rank(ranking, lvl, k),
            "map@k": lambda: binary.map_at_k(ranking, lvl, k),
            "ap@k": lambda: binary.ap_at_k(ranking, lvl, k),
            "ndcg": lambda: graded.ndcg(ranking),
            "ndcg@k": lambda: graded.ndcg(ranking, k),
            "ndcg_lin": lambda: graded.ndcg(ranking, gain="linear"),
            "ndcg_lin@k": lambda: graded.ndcg(ranking, k, gain="linear"),
            "hap": lambda: hierarchical.hierarchical_ap(ranking, hap_alpha),
            "asi": lambda: hierarchical.asi(ranking),
        }[self.kind]
        return fn()


_PATTERN = re.compile(r"^(?P<base>[a-z_\-]+)(?:@(?P<k>[^/]+))?(?:/level(?P<level>\d+))?$")


def parse_metric(name: str, ambiguous_r: bool = False) -> MetricSpec:
    """Parse one metric name; an unknown name raises ValueError with the closest valid names.
    ambiguous_r: refuse ``r@k``, naming its two readings."""
    text = name.strip().lower()
    if text in _PML_NAMES:
        kind, k = _PML_NAMES[text]
        return MetricSpec(name, kind, k)
    # trec_eval's names keep its convention: relevant = relevance level >= 1 (its relevance_level)
    trec = _TREC_PATTERN.match(text)
    if trec is not None and int(trec["k"]) >= 1:
        kind = _TREC[trec["base"]][0]
        return MetricSpec(name, kind, int(trec["k"]), 1 if KINDS[kind].binary else None)
    if text in ("map", "recip_rank", "rprec"):
        return MetricSpec(name, _TREC[text][0], None, 1)
    match = _PATTERN.match(text)
    kind, k = None, None
    if match:
        base, k_text, level_text = match["base"], match["k"], match["level"]
        if base in ("map", "map@r") and k_text == "r":
            kind = "map@r"
        elif k_text is None and base in KINDS and not KINDS[base].takes_k:
            kind = base
        elif k_text is not None and base in _ALIASES:
            if not k_text.isdigit() or int(k_text) < 1:
                raise ValueError(f"metric {name!r}: k must be a positive integer, got {k_text!r}")
            if base == "r" and ambiguous_r:
                raise ValueError(
                    f"metric {name!r} is ambiguous here: write hit@{k_text} (1 when at least one relevant item is in "
                    f"the top {k_text}: metric learning's Recall@K, RecBole's Hit) or recall@{k_text} (relevant items "
                    f"in the top {k_text} / all relevant: RecBole's and LightGCN's Recall)"
                )
            kind, k = _ALIASES[base], int(k_text)
        if kind is not None:
            level = int(level_text) if level_text is not None else None
            if level is not None and not KINDS[kind].binary:
                raise ValueError(f"metric {name!r}: /level applies to binary metrics only; {kind} uses every level")
            if level is not None and level < 1:
                raise ValueError(f"metric {name!r}: level must be >= 1 (1 = share the coarsest label)")
            return MetricSpec(name, kind, k, level)
    close = difflib.get_close_matches(text, _EXAMPLES, n=3, cutoff=0.4)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown metric {name!r}{hint} Known: {', '.join(_EXAMPLES)} (k any positive integer)")


def parse_metrics(names: str | list[str] | tuple[str, ...], ambiguous_r: bool = False) -> list[MetricSpec]:
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    else:
        names = [n.strip() if isinstance(n, str) else n for n in names]
    specs = [parse_metric(n, ambiguous_r) for n in names]
    if not specs:
        raise ValueError("no metric requested")
    seen: set[str] = set()
    for s in specs:
        if s.name in seen:
            raise ValueError(f"metric {s.name!r} is requested twice")
        seen.add(s.name)
    return specs
