"""Recommenders that score (user, item) by a dot product of embeddings.

* ``MF``: one trained embedding per user and per item (no graph).
* ``LightGCN`` (He et al., SIGIR 2020): embeddings propagated K times over Â = D^-½ A D^-½ without
  transforms or non-linearities; final = mean of layers 0..K.
* ``NGCF`` (Wang et al., SIGIR 2019): E⁽ˡ⁺¹⁾ = LeakyReLU((Â + I) E⁽ˡ⁾ W₁ + (Â E⁽ˡ⁾ ⊙ E⁽ˡ⁾) W₂), rows
  L2-normalised per layer, final = concatenation of layers 0..K (message dropout omitted).
* ``LightGCNpp`` (LightGCN++, Lee et al., RecSys 2024): LightGCN with Â = D^-α A D^-β (receiver and
  sender exponents free, default α = 0.6, β = −0.1), each layer's input L2-normalised so that message
  weights do not depend on embedding norms, final = γ·E⁰ + (1 − γ)·mean(E¹..Eᴷ) (γ = 0.2). Chosen as the
  recent GNN because it is the strongest published fix of LightGCN's normalisation at the same cost (one
  sparse product per layer) and its authors' splits of Gowalla, ML-1M and LastFM are the ones we ship.

Users: ``user_repr="id"`` trains one layer-0 embedding per user (transductive). ``user_repr="items"`` has
no per-user parameter: a user's layer-0 embedding is the mean of its items' layer-0 embeddings, then
message passing runs as usual. ``set_graph(interactions)`` rebuilds the graph operators, so a new user is
served from its context interactions without retraining (the inductive protocol).
"""

from __future__ import annotations

import torch
from torch import nn

from rankopt.recsys.data import Interactions
from rankopt.recsys.graph import csr_pair, normalized_adjacency, sparse_matmul, user_item_mean
from rankopt.registry import Registry

__all__ = ["Recommender", "MF", "LightGCN", "LightGCNpp", "NGCF", "RECOMMENDERS"]


class Recommender(nn.Module):
    """Shared mechanism: item table, users by ID or from their items, graph operators from interactions."""

    def __init__(self, n_users: int, n_items: int, dim: int = 64, user_repr: str = "id", init_std: float = 0.1) -> None:
        super().__init__()
        if user_repr not in ("id", "items"):
            raise ValueError(f"user_repr={user_repr!r} is not one of id, items")
        self.n_users, self.n_items, self.user_repr = n_users, n_items, user_repr
        self.item = nn.Embedding(n_items, dim)
        nn.init.normal_(self.item.weight, std=init_std)
        self.user = nn.Embedding(n_users, dim) if user_repr == "id" else None
        if self.user is not None:
            nn.init.normal_(self.user.weight, std=init_std)

    def set_graph(self, interactions: Interactions) -> None:
        """Rebuild the graph operators (and the users' item means) from these interactions."""
        device = self.item.weight.device
        if self.user is None:
            self._set_operator("user_items", user_item_mean(interactions, self.n_users, self.n_items, device))
        self._build_graph(interactions, device)

    def _set_operator(self, name: str, matrix: torch.Tensor, symmetric: bool = False) -> None:
        """A fixed sparse matrix and its transpose as (non-saved) buffers: they follow .to(device)."""
        forward, transposed = csr_pair(matrix, symmetric)
        self.register_buffer(name, forward, persistent=False)
        self.register_buffer(f"{name}_t", transposed, persistent=False)

    def _apply_operator(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return sparse_matmul(getattr(self, name), getattr(self, f"{name}_t"), x)

    def _build_graph(self, interactions: Interactions, device) -> None:
        pass  # no graph: MF

    def ego(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer-0 user and item embeddings."""
        users = self.user.weight if self.user is not None else self._apply_operator("user_items", self.item.weight)
        return users, self.item.weight

    def propagate(self, x: torch.Tensor) -> torch.Tensor:
        return x  # MF: no message passing

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final user and item embeddings; scores are their dot products."""
        users, items = self.ego()
        final = self.propagate(torch.cat([users, items]))
        return final[: self.n_users], final[self.n_users :]

    def ego_penalty(
        self, users: torch.Tensor, items: torch.Tensor | None = None, item_counts: torch.Tensor | None = None
    ) -> torch.Tensor:
        """½ Σ of squared layer-0 norms of these users and items (LightGCN's L2 term, before its /batch);
        items as indices (repeats count), or ``item_counts``: how many times each item occurs (n_items,)."""
        u, i = self.ego()
        item_term = (
            i[items].pow(2).sum() if item_counts is None else (item_counts.to(i.dtype) * i.pow(2).sum(dim=1)).sum()
        )
        return 0.5 * (u[users].pow(2).sum() + item_term)


class MF(Recommender):
    def __init__(
        self,
        n_users: int,
        n_items: int,
        graph: Interactions,
        dim: int = 64,
        user_repr: str = "id",
        init_std: float = 0.1,
    ) -> None:
        super().__init__(n_users, n_items, dim, user_repr, init_std)
        self.set_graph(graph)


class LightGCN(Recommender):
    left, right = 0.5, 0.5  # symmetric normalisation

    def __init__(
        self,
        n_users: int,
        n_items: int,
        graph: Interactions,
        dim: int = 64,
        layers: int = 3,
        user_repr: str = "id",
        init_std: float = 0.1,
    ) -> None:
        super().__init__(n_users, n_items, dim, user_repr, init_std)
        self.layers = layers
        self.set_graph(graph)

    def _build_graph(self, interactions: Interactions, device) -> None:
        adj = normalized_adjacency(interactions, self.n_users, self.n_items, self.left, self.right, device)
        self._set_operator("adjacency", adj, symmetric=self.left == self.right)

    def propagate(self, x: torch.Tensor) -> torch.Tensor:
        total = x
        for _ in range(self.layers):
            x = self._apply_operator("adjacency", x)
            total = total + x
        return total / (self.layers + 1)


class LightGCNpp(LightGCN):
    def __init__(
        self,
        n_users: int,
        n_items: int,
        graph: Interactions,
        dim: int = 64,
        layers: int = 3,
        alpha: float = 0.6,
        beta: float = -0.1,
        gamma: float = 0.2,
        user_repr: str = "id",
        init_std: float = 0.1,
    ) -> None:
        # plain attributes may precede Module.__init__; _build_graph, called by the parent's __init__, reads them
        self.left, self.right, self.gamma = alpha, beta, gamma
        super().__init__(n_users, n_items, graph, dim, layers, user_repr, init_std)

    def propagate(self, x: torch.Tensor) -> torch.Tensor:
        first, total = x, 0.0
        for _ in range(self.layers):
            x = self._apply_operator("adjacency", nn.functional.normalize(x, dim=1, eps=1e-12))
            total = total + x
        return self.gamma * first + (1 - self.gamma) * total / max(1, self.layers)


class NGCF(Recommender):
    def __init__(
        self,
        n_users: int,
        n_items: int,
        graph: Interactions,
        dim: int = 64,
        layers: int = 3,
        user_repr: str = "id",
        init_std: float = 0.1,
    ) -> None:
        super().__init__(n_users, n_items, dim, user_repr, init_std)
        self.w1 = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))
        self.w2 = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))
        self.set_graph(graph)

    def _build_graph(self, interactions: Interactions, device) -> None:
        self._set_operator(
            "adjacency", normalized_adjacency(interactions, self.n_users, self.n_items, device=device), symmetric=True
        )

    def propagate(self, x: torch.Tensor) -> torch.Tensor:
        outs = [x]
        for w1, w2 in zip(self.w1, self.w2):
            side = self._apply_operator("adjacency", x)  # Â E
            x = nn.functional.leaky_relu(w1(side + x) + w2(side * x), negative_slope=0.2)
            outs.append(nn.functional.normalize(x, dim=1))
        return torch.cat(outs, dim=1)


# name → recommender class; ``graph``: whether it propagates over the interaction graph (has layers)
RECOMMENDERS = Registry("recommender")
RECOMMENDERS.register("mf", MF, graph=False)
RECOMMENDERS.register("lightgcn", LightGCN, graph=True)
RECOMMENDERS.register("lightgcnpp", LightGCNpp, graph=True)
RECOMMENDERS.register("ngcf", NGCF, graph=True)
