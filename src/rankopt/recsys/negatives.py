"""Personalized-PageRank hard negatives (ITEM): computed once, top-M non-interacted items per user.

PPR from each user on the training bipartite graph by batched sparse power iteration,
x ← r·e_u + (1 − r)·Â x (Â the symmetric normalised adjacency), a block of users at a time: memory
O(nodes × block), never a dense users × items matrix. The paper's exact settings are unverified
(reference/item-recsys.md §1.3): restart, iterations, M and the mix with uniform negatives are
parameters.
"""

from __future__ import annotations

import numpy as np
import torch

from rankopt.recsys.data import Interactions
from rankopt.recsys.graph import normalized_adjacency

__all__ = ["ppr_negatives", "personalized_pagerank"]


def personalized_pagerank(adjacency: torch.Tensor, sources: torch.Tensor, restart: float = 0.15, iterations: int = 20) -> torch.Tensor:
    """PPR vectors of the given source nodes: (nodes, len(sources)) dense block."""
    n = adjacency.shape[0]
    e = torch.zeros(n, len(sources))
    e[sources, torch.arange(len(sources))] = 1.0
    x = e.clone()
    for _ in range(iterations):
        x = restart * e + (1 - restart) * torch.sparse.mm(adjacency, x)
    return x


def ppr_negatives(train: Interactions, n_users: int, n_items: int, m: int = 100, restart: float = 0.15,
                  iterations: int = 20, block: int = 512) -> np.ndarray:
    """(n_users, m) item indices: for each user the m items of highest PPR it has not interacted with."""
    if m < 1 or m > n_items:
        raise ValueError(f"m={m} must be between 1 and the {n_items} items")
    positives = train.by_user()
    most = max((len(np.unique(train.item[idx])) for idx in positives.values()), default=0)
    if m > n_items - most:
        raise ValueError(f"m={m}: some user has only {n_items - most} items it has not interacted with")
    adj = normalized_adjacency(train, n_users, n_items)
    out = np.zeros((n_users, m), dtype=np.int64)
    for start in range(0, n_users, block):
        users = torch.arange(start, min(start + block, n_users))
        scores = personalized_pagerank(adj, users, restart, iterations)[n_users:].T.clone()  # (b, n_items)
        for r, u in enumerate(users.tolist()):
            if u in positives:
                scores[r, torch.from_numpy(train.item[positives[u]])] = -1.0
        out[start : start + len(users)] = torch.topk(scores, m, dim=1).indices.numpy()
    return out
