"""ITEM loss against its formula written plainly; PPR against a dense power iteration; kernel reuse."""

import math

import numpy as np
import torch

from rankopt.losses import SupNDCG
from rankopt.recsys import Interactions, normalized_adjacency
from rankopt.recsys.losses import ITEMLoss, rank_loss_on_candidates
from rankopt.recsys.negatives import personalized_pagerank, ppr_negatives


def block(seed=0, b=5, c=8, n_items=20, d=6):
    g = torch.Generator().manual_seed(seed)
    users = torch.randn(b, d, dtype=torch.float64, generator=g)
    items = torch.randn(n_items, d, dtype=torch.float64, generator=g)
    cand = torch.stack([torch.randperm(n_items, generator=g)[:c] for _ in range(b)])
    pos = torch.zeros(b, c, dtype=torch.bool)
    pos[:, :3] = True
    pos[0, 3] = True
    return users, items, cand, pos


def item_reference(users, items, cand, pos, tau, k=None):
    u = torch.nn.functional.normalize(users, dim=1)
    it = torch.nn.functional.normalize(items, dim=1)
    losses = []
    for b in range(len(u)):
        s = it[cand[b]] @ u[b]
        p_idx = pos[b].nonzero().flatten().tolist()
        dcg = 0.0
        for p in p_idx:
            rank = 1 + sum(torch.sigmoid((s[j] - s[p]) / tau) for j in range(len(s)) if j != p)
            dcg = dcg + 1 / torch.log2(1 + rank)
        depth = len(p_idx) if k is None else min(k, len(p_idx))
        idcg = sum(1 / math.log2(1 + r) for r in range(1, depth + 1))
        losses.append(1 - dcg / idcg)
    return torch.stack(losses).mean()


def test_item_loss_value_and_gradient():
    users, items, cand, pos = block()
    for tau, k in [(0.01, None), (0.5, None), (0.1, 2)]:
        u1, u2 = users.clone().requires_grad_(), users.clone().requires_grad_()
        ours = ITEMLoss(tau=tau, k=k)(u1, items, cand, pos)
        ref = item_reference(u2, items, cand, pos, tau, k)
        ours.backward()
        ref.backward()
        assert abs(float(ours) - float(ref)) < 1e-9
        torch.testing.assert_close(u1.grad, u2.grad)


def test_rankopt_losses_run_on_candidate_blocks():
    users, items, cand, pos = block(1)
    value = rank_loss_on_candidates(SupNDCG(), users.requires_grad_(), items, cand, pos)
    value.backward()
    assert torch.isfinite(value) and users.grad.abs().sum() > 0


def test_ppr_matches_dense_power_iteration_and_excludes_positives():
    rng = np.random.default_rng(0)
    nu, ni = 7, 12
    train = Interactions(rng.integers(0, nu, 30), rng.integers(0, ni, 30))
    adj = normalized_adjacency(train, nu, ni)
    dense = adj.to_dense()
    sources = torch.tensor([0, 3])
    x = torch.zeros(nu + ni, 2)
    x[sources, torch.arange(2)] = 1
    e = x.clone()
    for _ in range(20):
        x = 0.15 * e + 0.85 * dense @ x
    torch.testing.assert_close(personalized_pagerank(adj, sources), x)
    neg = ppr_negatives(train, nu, ni, m=3, block=3)
    for u in range(nu):
        assert not set(neg[u].tolist()) & set(train.item[train.user == u].tolist())
