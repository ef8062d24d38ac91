"""Full-ranking evaluation of a recommender, LightGCN conventions, computed by rankopt.metrics.

For each test user, every item is scored, the user's known items are masked (ranked last, never
counted), and each metric of rankopt.metrics is computed on binary relevance (the user's test items):
``recall@K`` = hits in the top K / test items and ``ndcg@K`` = binary DCG@K / ideal DCG over
min(K, test items) — exactly LightGCN's code —, and RecBole's ``p@K``, ``hit@K``, ``mrr@K``,
``map@K``. Each ``recall@K`` also gives ``recall_norm@K`` = hits / min(K, test items), the other
denominator found in papers. Users without test items are left out and counted.

The scores come from the model's embeddings (dot product), from any function of a block of user ids,
or from a (users × items) matrix you already have.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from rankopt.metrics import rank_metrics
from rankopt.metrics.names import parse_metrics
from rankopt.recsys.data import Interactions
from rankopt.validation import as_tensor

__all__ = ["evaluate_recommender", "DEFAULT_METRICS", "DEFAULT_KS", "metrics_at", "PerUser"]

FAMILIES = ("recall", "ndcg", "p", "hit", "mrr", "map")
DEFAULT_METRICS = ("recall@20", "ndcg@20")  # what training validates on
DEFAULT_KS = (10, 20, 50)  # evaluate_recommender without metrics: every family at each (those <= the catalogue)

Scorer = Callable[[torch.Tensor], Any]


def metrics_at(ks: list[int] | tuple[int, ...]) -> list[str]:
    """Every recommendation metric at each cut-off: recall, ndcg, p, hit, mrr, map @k."""
    return [f"{family}@{k}" for k in ks for family in FAMILIES]


def evaluate_recommender(
    scores: Any,
    test: Any,
    masked: Any | None = None,
    metrics: list[str] | tuple[str, ...] | None = None,
    *,
    ks: list[int] | tuple[int, ...] | None = None,
    users: np.ndarray | None = None,
    chunk: int = 1024,
    per_user: bool = False,
    progress=None,
):
    """Mean of each metric over the test users.

    scores: ``(user_emb, item_emb)`` (scored by dot product), a function of a (b,) tensor of user ids
    returning their (b, items) scores, or a (users × items) score matrix (numpy or torch).
    test / masked: :class:`Interactions`, or a pair of arrays (user ids, item ids); ``masked`` items are
    removed from each user's ranking (the known ones; one that is also a test item stays rankable).
    metrics: names (``recall@20``, ``ndcg@10``, ``hr@10``, ``mrr@10`` ...); None: every family at each
    ``ks`` (default 10, 20, 50, those within the catalogue). ``users``: restrict to these (default: all
    with test items). With ``per_user=True`` returns (means, {"user": ids, metric: values}) in
    increasing user id. ``progress(done, total)`` is called after each block of users.
    """
    score_block, n_items = _scorer(scores)
    test, masked = _interactions(test, "test"), None if masked is None else _interactions(masked, "masked")
    if metrics is None:
        cutoffs = DEFAULT_KS if ks is None else tuple(ks)
        if ks is None and n_items is not None:
            cutoffs = tuple(k for k in DEFAULT_KS if k <= n_items)
            if not cutoffs:  # a catalogue smaller than every default: its own size, said once
                cutoffs = (n_items,)
                warnings.warn(
                    f"the default cut-offs {', '.join(map(str, DEFAULT_KS))} exceed the {n_items} items "
                    f"of the catalogue: metrics at {n_items}",
                    UserWarning,
                    stacklevel=2,
                )
        metrics = metrics_at(list(cutoffs))
    elif ks is not None:
        raise ValueError("give metrics or ks, not both")
    specs = parse_metrics(list(metrics), ambiguous_r=True)
    names = [s.name for s in specs]
    test_users = np.unique(test.user) if users is None else np.intersect1d(np.asarray(users), np.unique(test.user))
    if len(test_users) == 0:
        raise ValueError("no test user has a test item")
    extra = [f"recall_norm@{s.k}" for s in specs if s.kind == "recall"]
    values: dict[str, list[np.ndarray]] = {n: [] for n in names + extra}
    with torch.no_grad():
        for start in range(0, len(test_users), chunk):
            block = test_users[start : start + chunk]
            block_scores = score_block(torch.from_numpy(block))
            dev = lambda a: torch.from_numpy(a).to(block_scores.device)
            relevance = torch.zeros(block_scores.shape, dtype=torch.int64, device=block_scores.device)
            inside = np.isin(test.user, block)  # block is sorted (np.unique), so rows come from searchsorted
            relevance[dev(np.searchsorted(block, test.user[inside])), dev(test.item[inside])] = 1
            known = torch.zeros(block_scores.shape, dtype=torch.bool, device=block_scores.device)
            if masked is not None:
                inside = np.isin(masked.user, block)
                known[dev(np.searchsorted(block, masked.user[inside])), dev(masked.item[inside])] = True
            out = rank_metrics(block_scores, relevance, names, mask=known & (relevance == 0), n_levels=1)
            for n in names:
                values[n].append(out[n].cpu().numpy())
            n_test = relevance.sum(dim=1).double()
            for s in specs:  # the "normalised" Recall some papers report: hits / min(K, test items)
                if s.kind == "recall":
                    values[f"recall_norm@{s.k}"].append((out[s.name] * n_test / n_test.clamp(max=s.k)).cpu().numpy())
            if progress is not None:
                progress(start + len(block), len(test_users))
    columns = {n: np.concatenate(v) for n, v in values.items()}
    result: dict = {n: float(np.nansum(v)) / len(test_users) for n, v in columns.items()}
    result["n_users"] = int(len(test_users))
    if per_user:
        return result, {"user": test_users, **columns}
    return result


def _scorer(scores: Any) -> tuple[Scorer, int | None]:
    """A function from a block of user ids to their (b, items) float64 scores, and the item count if known."""
    if isinstance(scores, (tuple, list)) and len(scores) == 2:
        user_emb, item_emb = (as_tensor(e, "embeddings") for e in scores)
        if user_emb.ndim != 2 or item_emb.ndim != 2 or user_emb.shape[1] != item_emb.shape[1]:
            raise ValueError(
                f"(user_emb, item_emb) must be (users, d) and (items, d); got {tuple(user_emb.shape)}, "
                f"{tuple(item_emb.shape)}"
            )
        return (lambda u: (user_emb[u.to(user_emb.device)] @ item_emb.T).double()), item_emb.shape[0]
    if callable(scores):

        def call(u: torch.Tensor) -> torch.Tensor:
            out = as_tensor(scores(u), "the score function's output")
            if out.ndim != 2 or out.shape[0] != len(u):
                raise ValueError(
                    f"the score function returned shape {tuple(out.shape)} for {len(u)} users; expected (users, items)"
                )
            return out.double()

        return call, None
    matrix = as_tensor(scores, "scores")
    if matrix.ndim != 2:
        raise ValueError(
            f"scores must be (user_emb, item_emb), a function of user ids, or a (users, items) matrix; "
            f"got shape {tuple(matrix.shape)}"
        )

    def rows(u: torch.Tensor) -> torch.Tensor:
        if int(u.max()) >= matrix.shape[0]:
            raise ValueError(f"user {int(u.max())} has a test item but the score matrix has {matrix.shape[0]} rows")
        return matrix[u.to(matrix.device)].double()

    return rows, matrix.shape[1]


def _interactions(x: Any, name: str) -> Interactions:
    if isinstance(x, Interactions):
        return x
    if isinstance(x, (tuple, list)) and len(x) == 2:
        user, item = (np.asarray(a, dtype=np.int64) for a in x)
        if user.shape != item.shape or user.ndim != 1:
            raise ValueError(f"{name}: user and item ids must be two 1-D arrays of one length")
        return Interactions(user, item)
    raise TypeError(f"{name} must be Interactions or a pair of arrays (user ids, item ids); got {type(x).__name__}")


class PerUser:
    """Per-user values of an evaluation (``{"user": ids, metric: values}``), written as test_per_query.csv."""

    def __init__(self, columns: dict[str, np.ndarray]) -> None:
        self.columns = columns

    def write_csv(self, path) -> None:
        import csv
        import io

        from rankopt.atomic import atomic_write_text

        names = [n for n in self.columns if n != "user"]
        out = io.StringIO(newline="")
        w = csv.writer(out)
        w.writerow(["user"] + names)
        for i, user in enumerate(self.columns["user"]):
            w.writerow([int(user)] + [f"{self.columns[n][i]:.10g}" for n in names])
        atomic_write_text(path, out.getvalue())
