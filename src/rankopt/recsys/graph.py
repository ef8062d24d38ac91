"""The user–item bipartite graph as sparse operators (never a dense users × items matrix).

Products with a fixed sparse matrix go through ``sparse_matmul``: CSR forward, and a backward that
multiplies by a stored CSR transpose. PyTorch's own COO backward re-transposes and coalesces at every
call; on CPU the pair is about 6× faster per LightGCN layer (ML-1M: 20 ms instead of 117 ms).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from rankopt.recsys.data import Interactions

__all__ = ["normalized_adjacency", "user_item_mean", "csr_pair", "sparse_matmul"]


def csr_pair(matrix: torch.Tensor, symmetric: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, Mᵀ) in CSR from a sparse COO matrix; Mᵀ is M itself when ``symmetric``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
        forward = matrix.to_sparse_csr()
        return forward, forward if symmetric else matrix.t().coalesce().to_sparse_csr()


class _SparseMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, matrix, transposed, x):
        ctx.transposed = transposed  # a constant, not an input that needs saving for gradients
        return matrix @ x

    @staticmethod
    def backward(ctx, grad):
        return None, None, ctx.transposed @ grad


def sparse_matmul(matrix: torch.Tensor, transposed: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """matrix @ x with gradient for x only; ``transposed`` is matrixᵀ (see ``csr_pair``)."""
    return _SparseMatmul.apply(matrix, transposed, x)


def _pairs(train: Interactions) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = np.unique(np.stack([train.user, train.item], axis=1), axis=0)  # duplicates counted once
    return torch.from_numpy(pairs[:, 0]), torch.from_numpy(pairs[:, 1])


def normalized_adjacency(
    train: Interactions,
    n_users: int,
    n_items: int,
    left: float = 0.5,
    right: float = 0.5,
    device: torch.device | str | None = None,
) -> torch.Tensor:
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
    adj = torch.sparse_coo_tensor(
        torch.stack([rows, cols]), values.to(torch.float32), (n, n), check_invariants=True
    ).coalesce()
    return adj.to(device) if device is not None else adj


def user_item_mean(
    train: Interactions, n_users: int, n_items: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """Sparse (n_users, n_items) operator M with (M E)_u = mean of E over u's interacted items (0 for a user
    without interactions): the ID-free user representation of the inductive protocol."""
    u, i = _pairs(train)
    deg = torch.bincount(u, minlength=n_users).to(torch.float32).clamp_min(1)
    m = torch.sparse_coo_tensor(torch.stack([u, i]), 1.0 / deg[u], (n_users, n_items), check_invariants=True).coalesce()
    return m.to(device) if device is not None else m
