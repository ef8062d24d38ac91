"""Personalized-PageRank hard negatives (ITEM): computed once, top-M non-interacted items per user, cached.

PPR from each user on the training bipartite graph by batched sparse power iteration,
x ← r·e_u + (1 − r)·Â x (Â the symmetric normalised adjacency), a block of users at a time: memory
O(nodes × block), never a dense users × items matrix. The paper's exact settings are unverified
(reference/item-recsys.md §1.3): restart, iterations, M and the mix with uniform negatives are
parameters. The result depends only on the training graph and those parameters, so it is cached on
disk under a hash of both and reused by every run on the same split.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from rankopt.atomic import atomic_write
from rankopt.recsys.data import Interactions
from rankopt.recsys.graph import csr_pair, normalized_adjacency

__all__ = ["ppr_negatives", "personalized_pagerank", "default_cache_dir"]


def default_cache_dir() -> Path:
    """$RANKOPT_CACHE, else $XDG_CACHE_HOME/rankopt, else ~/.cache/rankopt."""
    if os.environ.get("RANKOPT_CACHE"):
        return Path(os.environ["RANKOPT_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rankopt"


def personalized_pagerank(
    adjacency: torch.Tensor, sources: torch.Tensor, restart: float = 0.15, iterations: int = 20
) -> torch.Tensor:
    """PPR vectors of the given source nodes: (nodes, len(sources)) dense block."""
    n = adjacency.shape[0]
    e = torch.zeros(n, len(sources), device=adjacency.device)
    e[sources.to(adjacency.device), torch.arange(len(sources), device=adjacency.device)] = 1.0
    x = e.clone()
    for _ in range(iterations):
        x = restart * e + (1 - restart) * (adjacency @ x)
    return x


def ppr_negatives(
    train: Interactions,
    n_users: int,
    n_items: int,
    m: int = 100,
    restart: float = 0.15,
    iterations: int = 20,
    block: int = 512,
    device: torch.device | str | None = None,
    cache_dir: str | Path | None = None,
    skip: int = 0,
    with_scores: bool = False,
):
    """(n_users, m) item indices: for each user the m items of highest PPR it has not interacted with,
    after the first ``skip`` of them (the very top are the likeliest unobserved positives: a band
    [skip, skip + m) keeps hard negatives while avoiding the false ones). ``with_scores``: also their
    PPR values (n_users, m) float32, to sample in proportion to them.
    ``cache_dir``: read / write the result there (atomically); None computes without caching."""
    if m < 1 or skip < 0 or m + skip > n_items:
        raise ValueError(f"m={m}, skip={skip}: need m >= 1, skip >= 0 and m + skip within the {n_items} items")
    pairs = np.unique(np.stack([train.user, train.item], axis=1).astype(np.int64), axis=0)
    most = int(np.bincount(pairs[:, 0], minlength=1).max()) if len(pairs) else 0
    if m + skip > n_items - most:
        raise ValueError(f"m={m}, skip={skip}: some user has only {n_items - most} items it has not interacted with")
    cache = None
    if cache_dir is not None:
        key = hashlib.sha256(
            pairs.tobytes() + repr((n_users, n_items, m, skip, restart, iterations)).encode()
        ).hexdigest()[:24]
        cache = Path(cache_dir) / f"ppr-{key}.npz"
        if cache.is_file():
            with np.load(cache) as saved:
                return (saved["items"], saved["scores"]) if with_scores else saved["items"]
    adj = csr_pair(normalized_adjacency(train, n_users, n_items, device=device), symmetric=True)[0]
    out = np.zeros((n_users, m), dtype=np.int64)
    values = np.zeros((n_users, m), dtype=np.float32)
    for start in range(0, n_users, block):
        stop = min(start + block, n_users)
        users = torch.arange(start, stop)
        scores = personalized_pagerank(adj, users, restart, iterations)[n_users:].T.contiguous()  # (b, n_items)
        inside = (pairs[:, 0] >= start) & (pairs[:, 0] < stop)
        rows = torch.from_numpy(pairs[inside, 0] - start).to(scores.device)
        scores[rows, torch.from_numpy(pairs[inside, 1]).to(scores.device)] = -1.0  # PPR ≥ 0: positives sort last
        top = torch.topk(scores, skip + m, dim=1)
        out[start:stop] = top.indices[:, skip:].cpu().numpy()
        values[start:stop] = top.values[:, skip:].cpu().numpy()
    if cache is not None:
        atomic_write(cache, lambda f: np.savez(f, items=out, scores=values))
    return (out, values) if with_scores else out
