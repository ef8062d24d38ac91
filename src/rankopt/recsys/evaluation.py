"""Full-ranking evaluation of a recommender, LightGCN conventions, computed by rankopt.metrics.

For each test user, every item is scored, the user's known items are masked (ranked last, never
counted), and each metric of rankopt.metrics is computed on binary relevance (the user's test items):
``recall@K`` = hits in the top K / test items and ``ndcg@K`` = binary DCG@K / ideal DCG over
min(K, test items) — exactly LightGCN's code —, and RecBole's ``p@K``, ``hit@K``, ``mrr@K``,
``map@K``. Each ``recall@K`` also gives ``recall_norm@K`` = hits / min(K, test items), the other
denominator found in papers. Users without test items are left out and counted.
"""

from __future__ import annotations

import numpy as np
import torch

from rankopt.metrics import rank_metrics
from rankopt.metrics.names import parse_metrics
from rankopt.recsys.data import Interactions

__all__ = ["evaluate_recommender", "DEFAULT_METRICS", "metrics_at", "PerUser"]

FAMILIES = ("recall", "ndcg", "p", "hit", "mrr", "map")
DEFAULT_METRICS = ("recall@20", "ndcg@20")


def metrics_at(ks: list[int] | tuple[int, ...]) -> list[str]:
    """Every recommendation metric at each cut-off: recall, ndcg, p, hit, mrr, map @k."""
    return [f"{family}@{k}" for k in ks for family in FAMILIES]


def evaluate_recommender(user_emb: torch.Tensor, item_emb: torch.Tensor, test: Interactions, masked: Interactions,
                         metrics: list[str] | tuple[str, ...] = DEFAULT_METRICS, users: np.ndarray | None = None,
                         chunk: int = 1024, per_user: bool = False, progress=None):
    """Mean of each metric over the test users (``users``: restrict to these; default: all with test
    items). ``masked``: interactions whose items are removed from each user's ranking (the known ones).
    With ``per_user=True`` returns (means, {"user": ids, metric: values}) in increasing user id.
    ``progress(done, total)`` is called after each block of users."""
    n_items = item_emb.shape[0]
    specs = parse_metrics(list(metrics))
    names = [s.name for s in specs]
    for s in specs:
        if s.k is not None and s.k > n_items:
            raise ValueError(f"metric {s.name}: K={s.k} is larger than the {n_items} items")
    test_users = np.unique(test.user) if users is None else np.intersect1d(np.asarray(users), np.unique(test.user))
    if len(test_users) == 0:
        raise ValueError("no test user has a test item")
    extra = [f"recall_norm@{s.k}" for s in specs if s.kind == "recall"]
    values: dict[str, list[np.ndarray]] = {n: [] for n in names + extra}
    with torch.no_grad():
        for start in range(0, len(test_users), chunk):
            block = test_users[start : start + chunk]
            dev = lambda a: torch.from_numpy(a).to(item_emb.device)  # noqa: E731
            scores = (user_emb[dev(block)] @ item_emb.T).double()  # (b, n_items)
            relevance = torch.zeros(scores.shape, dtype=torch.int64, device=scores.device)
            inside = np.isin(test.user, block)  # block is sorted (np.unique), so rows come from searchsorted
            rows = dev(np.searchsorted(block, test.user[inside]))
            relevance[rows, dev(test.item[inside])] = 1
            inside = np.isin(masked.user, block)
            rows = dev(np.searchsorted(block, masked.user[inside]))
            cols = dev(masked.item[inside])
            keep = relevance[rows, cols] == 0  # an item in both train and test stays rankable
            scores[rows[keep], cols[keep]] = float("-inf")
            # -inf rows sort last; rank_metrics needs finite scores, so put them below every real score
            floor = scores[torch.isfinite(scores)].min() - 1.0
            scores = torch.where(torch.isfinite(scores), scores, floor)
            out = rank_metrics(scores, relevance, names, n_levels=1)
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
