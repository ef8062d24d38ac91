"""Full-ranking evaluation of a recommender, LightGCN conventions, computed by rankopt.metrics.

For each test user, every item is scored, the user's training items are masked (ranked last, never
counted), and Recall@K = hits in the top K / test items and NDCG@K = binary DCG@K / ideal DCG over
min(K, test items) — exactly ``recall@K`` and ``ndcg@K`` of rankopt.metrics on binary relevance.
``recall_norm@K`` = hits / min(K, test items), the other denominator found in papers.
Users without test items are left out and counted.
"""

from __future__ import annotations

import numpy as np
import torch

from rankopt.metrics import rank_metrics
from rankopt.recsys.data import Interactions

__all__ = ["evaluate_recommender"]


def evaluate_recommender(user_emb: torch.Tensor, item_emb: torch.Tensor, test: Interactions, masked: Interactions,
                         ks: tuple[int, ...] = (20,), users: np.ndarray | None = None, chunk: int = 1024) -> dict[str, float]:
    """Mean Recall@K and NDCG@K over the test users (``users``: restrict to these; default: all with
    test items). ``masked``: interactions whose items are removed from each user's ranking (training)."""
    n_items = item_emb.shape[0]
    test_users = np.unique(test.user) if users is None else np.intersect1d(np.asarray(users), np.unique(test.user))
    if len(test_users) == 0:
        raise ValueError("no test user has a test item")
    if max(ks) > n_items:
        raise ValueError(f"K={max(ks)} is larger than the {n_items} items")
    names = [f"recall@{k}" for k in ks] + [f"ndcg@{k}" for k in ks]
    sums = dict.fromkeys(names + [f"recall_norm@{k}" for k in ks], 0.0)
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
                sums[n] += float(out[n].nansum())
            n_test = relevance.sum(dim=1).double()
            for k in ks:  # the "normalised" Recall some papers report: hits / min(K, test items)
                sums[f"recall_norm@{k}"] += float((out[f"recall@{k}"] * n_test / n_test.clamp(max=k)).nansum())
    result = {n: sums[n] / len(test_users) for n in sums}
    result["n_users"] = int(len(test_users))
    return result
