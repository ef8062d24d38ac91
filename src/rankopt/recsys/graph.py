"""The user–item bipartite graph as a sparse, symmetrically normalised adjacency (never dense)."""

from __future__ import annotations

import numpy as np
import torch

from rankopt.recsys.data import Interactions

__all__ = ["normalized_adjacency"]


def normalized_adjacency(train: Interactions, n_users: int, n_items: int) -> torch.Tensor:
    """Â = D^-1/2 A D^-1/2 over the (n_users + n_items) nodes, A the symmetric bipartite adjacency of the
    training interactions (duplicates counted once): a sparse COO tensor (LightGCN, He et al. 2020)."""
    pairs = np.unique(np.stack([train.user, train.item], axis=1), axis=0)
    u = torch.from_numpy(pairs[:, 0])
    i = torch.from_numpy(pairs[:, 1]) + n_users
    rows, cols = torch.cat([u, i]), torch.cat([i, u])
    n = n_users + n_items
    deg = torch.bincount(rows, minlength=n).to(torch.float32)
    inv_sqrt = torch.where(deg > 0, deg.rsqrt(), torch.zeros_like(deg))
    values = inv_sqrt[rows] * inv_sqrt[cols]
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), values, (n, n)).coalesce()
