"""Training recommenders: BPR with uniform negatives (LightGCN-PyTorch semantics), model selection on
the validation split.

BPR (Rendle et al., 2009) as LightGCN-PyTorch computes it: for sampled (user, positive, negative)
triples, loss = mean softplus(s_neg − s_pos) + λ·½(|e_u⁰|² + |e_p⁰|² + |e_n⁰|²)/batch on the layer-0
embeddings. Negatives are drawn uniformly among the items the user has not interacted with in training.
"""

from __future__ import annotations

import numpy as np
import torch

from rankopt.recsys.data import Interactions

__all__ = ["uniform_negatives", "bpr_loss", "train_bpr"]


def _interaction_keys(train: Interactions, n_items: int) -> np.ndarray:
    return np.unique(train.user.astype(np.int64) * n_items + train.item)


def uniform_negatives(keys: np.ndarray, n_items: int, users: np.ndarray, rng: np.random.Generator,
                      max_rounds: int = 1000) -> np.ndarray:
    """One uniform item per user that the user has not interacted with: vectorised rejection sampling
    against the sorted (user·n_items + item) keys of the training interactions."""
    out = rng.integers(0, n_items, len(users))
    for _ in range(max_rounds):
        key = users.astype(np.int64) * n_items + out
        pos = np.searchsorted(keys, key).clip(max=len(keys) - 1)
        bad = keys[pos] == key
        if not bad.any():
            return out
        out[bad] = rng.integers(0, n_items, int(bad.sum()))
    raise ValueError("could not sample negatives: some users have interacted with (almost) every item")


def bpr_loss(model, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, weight_decay: float = 1e-4) -> torch.Tensor:
    user_emb, item_emb = model.embeddings()
    u, p, n = user_emb[users], item_emb[pos], item_emb[neg]
    loss = torch.nn.functional.softplus((u * n).sum(1) - (u * p).sum(1)).mean()
    reg = (model.user.weight[users].pow(2).sum() + model.item.weight[pos].pow(2).sum() + model.item.weight[neg].pow(2).sum())
    return loss + weight_decay * 0.5 * reg / len(users)


def train_bpr(model, train: Interactions, n_items: int, epochs: int = 10, batch_size: int = 2048, lr: float = 1e-3,
              weight_decay: float = 1e-4, seed: int = 0, optimizer: torch.optim.Optimizer | None = None) -> list[float]:
    """One pass per epoch over the training interactions in shuffled mini-batches; returns the mean
    loss of each epoch. ``optimizer`` continues an existing one (default: a new Adam)."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    opt = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    keys = _interaction_keys(train, n_items)
    history = []
    for _ in range(epochs):
        order = rng.permutation(len(train))
        total = 0.0
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            users = train.user[idx]
            neg = uniform_negatives(keys, n_items, users, rng)
            loss = bpr_loss(model, torch.from_numpy(users), torch.from_numpy(train.item[idx]), torch.from_numpy(neg), weight_decay)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss) * len(idx)
        history.append(total / len(train))
    return history
