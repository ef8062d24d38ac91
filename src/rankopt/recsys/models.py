"""Recommenders that score (user, item) by a dot product of embeddings.

* ``MF``: one trained embedding per user and per item.
* ``LightGCN`` (He et al., SIGIR 2020): embeddings propagated K times over the normalised bipartite
  graph without transforms or non-linearities, final = mean of layers 0..K.
* ``NGCF`` (Wang et al., SIGIR 2019): E⁽ˡ⁺¹⁾ = LeakyReLU((Â + I) E⁽ˡ⁾ W₁ + (Â E⁽ˡ⁾ ⊙ E⁽ˡ⁾) W₂), rows
  L2-normalised per layer, final = concatenation of layers 0..K (message dropout omitted).
For the inductive protocol a user needs no trained ID embedding: ``user_from_items`` builds it from
the propagated embeddings of the items the user interacted with (their mean), so a new user is served
from its context interactions without retraining.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MF", "LightGCN", "NGCF"]


class MF(nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int = 64, init_std: float = 0.1) -> None:
        super().__init__()
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        nn.init.normal_(self.user.weight, std=init_std)
        nn.init.normal_(self.item.weight, std=init_std)

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user.weight, self.item.weight

    def user_from_items(self, items_per_user: list[torch.Tensor]) -> torch.Tensor:
        _, item = self.embeddings()
        return torch.stack([item[i].mean(dim=0) if len(i) else torch.zeros_like(item[0]) for i in items_per_user])


class LightGCN(MF):
    def __init__(self, n_users: int, n_items: int, adjacency: torch.Tensor, dim: int = 64, layers: int = 3,
                 init_std: float = 0.1) -> None:
        super().__init__(n_users, n_items, dim, init_std)
        self.register_buffer("adjacency", adjacency, persistent=False)
        self.layers = layers
        self.n_users = n_users

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Propagated user and item embeddings: mean over layers 0..K of Â^k E⁰."""
        x = torch.cat([self.user.weight, self.item.weight])
        total = x
        for _ in range(self.layers):
            x = torch.sparse.mm(self.adjacency, x)
            total = total + x
        final = total / (self.layers + 1)
        return final[: self.n_users], final[self.n_users :]


class NGCF(MF):
    def __init__(self, n_users: int, n_items: int, adjacency: torch.Tensor, dim: int = 64, layers: int = 3,
                 init_std: float = 0.1) -> None:
        super().__init__(n_users, n_items, dim, init_std)
        self.register_buffer("adjacency", adjacency, persistent=False)
        self.w1 = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))
        self.w2 = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))
        self.n_users = n_users

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([self.user.weight, self.item.weight])
        outs = [x]
        for w1, w2 in zip(self.w1, self.w2):
            side = torch.sparse.mm(self.adjacency, x)  # Â E
            x = nn.functional.leaky_relu(w1(side + x) + w2(side * x), negative_slope=0.2)
            outs.append(nn.functional.normalize(x, dim=1))
        final = torch.cat(outs, dim=1)
        return final[: self.n_users], final[self.n_users :]

    def user_from_items(self, items_per_user: list[torch.Tensor]) -> torch.Tensor:
        _, item = self.embeddings()
        return torch.stack([item[i].mean(dim=0) if len(i) else torch.zeros_like(item[0]) for i in items_per_user])
