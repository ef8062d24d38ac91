"""The user–item bipartite graph as sparse operators (never a dense users × items matrix)."""

from __future__ import annotations

import numpy as np
import torch

from rankopt.recsys.data import Interactions

__all__ = ["normalized_adjacency", "user_item_mean"]


def _pairs(train: Interactions) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = np.unique(np.stack([train.user, train.item], axis=1), axis=0)  # duplicates counted once
    return torch.from_numpy(pairs[:, 0]), torch.from_numpy(pairs[:, 1])


def normalized_adjacency(train: Interactions, n_users: int, n_items: int, left: float = 0.5, right: float = 0.5,
                         device: torch.device | str | None = None) -> torch.Tensor:
    """Â = D^-left A D^-right over the (n_users + n_items) nodes, A the symmetric bipartite adjacency of the
    training interactions: a sparse COO tensor. left = right = ½ is LightGCN's symmetric normalisation
    (He et al. 2020); LightGCN++ (Lee et al. 2024) makes the receiver (left) and sender (right) exponents
    free. Nodes without edges get a zero row and column."""
    u, i = _pairs(train)
    i = i + n_users
    rows, cols = torch.cat([u, i]), torch.cat([i, u])
    n = n_users + n_items
    deg = torch.bincount(rows, minlength=n).to(torch.float64)
    safe = deg.clamp_min(1)
    values = (safe[rows] ** -left) * (safe[cols] ** -right)
    adj = torch.sparse_coo_tensor(torch.stack([rows, cols]), values.to(torch.float32), (n, n), check_invariants=True).coalesce()
    return adj.to(device) if device is not None else adj


def user_item_mean(train: Interactions, n_users: int, n_items: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Sparse (n_users, n_items) operator M with (M E)_u = mean of E over u's interacted items (0 for a user
    without interactions): the ID-free user representation of the inductive protocol."""
    u, i = _pairs(train)
    deg = torch.bincount(u, minlength=n_users).to(torch.float32).clamp_min(1)
    m = torch.sparse_coo_tensor(torch.stack([u, i]), 1.0 / deg[u], (n_users, n_items), check_invariants=True).coalesce()
    return m.to(device) if device is not None else m
