"""The one rank kernel every rank loss is built on.

For each query i and each of its ranked items k (the positives, or every item with relevance),
it sums a step over the candidates j that a selector picks by level:

    out[i, k] = Σ_j  sel(ℓ_j, ℓ_k) · w(ℓ_j, ℓ_k) · step(s_ij − s_ik),   j ≠ k

(ℓ = level of an item for the query; w an optional weight table, min(rel_j, rel_k) for the H-rank).
Ranks are 1 + such sums: SupAP's rank = 1 + Σ_{ℓ_j ≥ ℓ_k} H + Σ_{ℓ_j < ℓ_k} H̃.

Memory: nothing of shape (B, N, N) is ever built. Blocks of (queries × items × candidates) are sized
from a memory budget, and the backward pass recomputes each block instead of storing it, so peak
memory is O(B·N) plus one block, whatever the size of the reference set (a memory bank).
"""

from __future__ import annotations

import torch

from rankopt.losses.steps import Step

__all__ = ["pair_sums", "SELECTORS"]

SELECTORS = ("lower", "not_lower", "higher", "not_higher", "all")


def _select(cand_levels: torch.Tensor, item_levels: torch.Tensor, selector: str) -> torch.Tensor:
    """(b, p, C) bool from candidate levels (b, 1, C) and item levels (b, p, 1); level -1 = ignored."""
    if selector == "lower":
        sel = cand_levels < item_levels
    elif selector == "not_lower":
        sel = cand_levels >= item_levels
    elif selector == "higher":
        sel = cand_levels > item_levels
    elif selector == "not_higher":
        sel = cand_levels <= item_levels
    else:
        sel = torch.ones(
            torch.broadcast_shapes(cand_levels.shape, item_levels.shape), dtype=torch.bool, device=cand_levels.device
        )
    return sel & (cand_levels >= 0)


class _Block:
    """One (rows, items) block: the pair differences t and their weights (None = every pair counts)."""

    def __init__(self, scores, items, item_levels, item_valid, cand_index, cand_levels, selector, weights, rows, cols):
        s = scores[rows]  # (b, N)
        it = items[rows, cols]  # (b, p)
        self.item_index = it
        sk = s.gather(1, it)  # (b, p)
        if cand_index is None:
            cand = s
            ids = None
        else:
            ids = cand_index[rows]
            cand = s.gather(1, ids)
        self.cand_ids = ids
        self.t = cand.unsqueeze(1) - sk.unsqueeze(2)  # (b, p, C)
        if selector == "unmasked":  # every candidate, the item itself included (corrections come later)
            self.w = None
            return
        clev = cand_levels[rows]
        ilev = item_levels[rows, cols].unsqueeze(2)
        sel = _select(clev.unsqueeze(1), ilev, selector.removesuffix("+self"))
        if not selector.endswith("+self"):
            if ids is None:
                ids = torch.arange(s.shape[1], device=s.device).expand(s.shape[0], -1)
            sel &= ids.unsqueeze(1) != it.unsqueeze(2)  # never the item against itself
        sel &= item_valid[rows, cols].unsqueeze(2)
        if weights is None:
            self.w = sel.to(self.t.dtype)
        else:  # weights: (B, L+1) per-level values; pair weight min(w[ℓ_j], w[ℓ_k])
            wq = weights[rows]
            wj = wq.gather(1, clev.clamp_min(0).to(torch.int64)).unsqueeze(1)
            wk = wq.gather(1, ilev.squeeze(2).clamp_min(0).to(torch.int64)).unsqueeze(2)
            self.w = torch.minimum(wj, wk).to(self.t.dtype) * sel

    def weighted(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.w is None else x * self.w


class _PairSums(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores, items, item_levels, item_valid, cand_index, cand_levels, weights, step, selector, blocks):
        out = torch.zeros(items.shape, dtype=scores.dtype, device=scores.device)
        for rows, cols in blocks:
            blk = _Block(scores, items, item_levels, item_valid, cand_index, cand_levels, selector, weights, rows, cols)
            out[rows, cols] = blk.weighted(step.value(blk.t)).sum(dim=2)
        ctx.save_for_backward(scores, items, item_levels, item_valid, cand_index, cand_levels, weights)
        ctx.step, ctx.selector, ctx.blocks = step, selector, blocks
        return out

    @staticmethod
    def backward(ctx, grad_out):
        scores, items, item_levels, item_valid, cand_index, cand_levels, weights = ctx.saved_tensors
        grad = torch.zeros_like(scores)
        for rows, cols in ctx.blocks:
            blk = _Block(
                scores, items, item_levels, item_valid, cand_index, cand_levels, ctx.selector, weights, rows, cols
            )
            d = blk.weighted(ctx.step.derivative(blk.t)).mul_(grad_out[rows, cols].unsqueeze(2))  # (b, p, C)
            g = grad[rows]
            if blk.cand_ids is None:
                g += d.sum(dim=1)  # ∂t/∂s_ij = +1
            else:
                g.scatter_add_(1, blk.cand_ids, d.sum(dim=1))
            g.scatter_add_(1, blk.item_index, -d.sum(dim=2))  # ∂t/∂s_ik = -1
            grad[rows] = g
        return grad, None, None, None, None, None, None, None, None, None


def _blocks(n_rows: int, n_items: int, n_cand: int, budget: int) -> list[tuple[slice, slice]]:
    """(rows, items) blocks whose (rows × items × candidates) work tensors fit the budget."""
    per_pair = 48  # bytes per (row, item, candidate): t, weights, step value, masks
    cells = max(1, budget // (per_pair * max(1, n_cand)))
    p = min(n_items, cells)
    b = max(1, min(n_rows, cells // max(1, p)))
    return [
        (slice(r, min(r + b, n_rows)), slice(c, min(c + p, n_items)))
        for r in range(0, n_rows, b)
        for c in range(0, n_items, p)
    ]


def pair_sums(
    scores: torch.Tensor,
    items: torch.Tensor,
    item_levels: torch.Tensor,
    item_valid: torch.Tensor,
    step: Step,
    selector: str,
    cand_levels: torch.Tensor,
    cand_index: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    memory_budget: int = 64 << 20,
) -> torch.Tensor:
    """Σ_j sel·w·step(s_ij − s_ik) for every query i and item k: (B, P), differentiable in ``scores``.

    scores: (B, N) query × reference similarities. items: (B, P) reference indices of the ranked
    items, item_levels (B, P), item_valid (B, P) bool (padding slots are False).
    cand_index: (B, C) reference indices of the candidates j, or None for all N references;
    cand_levels: their levels, (B, C) or (B, N); -1 marks an ignored reference.
    weights: optional (B, L+1) per-level values, pair weight min(w[ℓ_j], w[ℓ_k]).

    Over all references with selector "lower" or "all" (the big case), the block sums every
    candidate without masks and the few pairs the selector leaves out (items at least as relevant,
    the item itself, ignored references) are subtracted by a second, small call.
    """
    if selector not in SELECTORS:
        raise ValueError(f"selector={selector!r} is not one of {SELECTORS}")
    if items.shape[1] == 0:
        return torch.zeros(items.shape, dtype=scores.dtype, device=scores.device)
    if cand_index is None and weights is None and selector in ("lower", "all"):
        total = _run(scores, items, item_levels, item_valid, None, cand_levels, None, step, "unmasked", memory_budget)
        if selector == "all":  # only the item itself is left out: step(0), no gradient
            total = total - step.value(torch.zeros((), dtype=scores.dtype, device=scores.device))
        else:  # "lower": items at least as relevant, the item itself included
            own = torch.where(item_valid, item_levels, torch.full_like(item_levels, -1))
            total = total - _run(
                scores, items, item_levels, item_valid, items, own, None, step, "not_lower+self", memory_budget
            )
        ignored = cand_levels < 0
        if bool(ignored.any()):
            n_ign = int(ignored.sum(dim=1).max())
            idx = torch.sort(ignored.to(torch.int8), dim=1, descending=True, stable=True).indices[:, :n_ign]
            lev = torch.where(ignored.gather(1, idx), torch.zeros_like(idx), torch.full_like(idx, -1))
            total = total - _run(
                scores, items, item_levels, item_valid, idx, lev, None, step, "all+self", memory_budget
            )
        return total * item_valid
    return _run(scores, items, item_levels, item_valid, cand_index, cand_levels, weights, step, selector, memory_budget)


def _run(scores, items, item_levels, item_valid, cand_index, cand_levels, weights, step, selector, budget):
    n_cand = scores.shape[1] if cand_index is None else cand_index.shape[1]
    blocks = _blocks(scores.shape[0], items.shape[1], n_cand, budget)
    args = (scores, items, item_levels, item_valid, cand_index, cand_levels, weights, step, selector, blocks)
    if not step.differentiable or not scores.requires_grad:
        with torch.no_grad():
            return _PairSums.forward(_NoCtx(), *args)
    return _PairSums.apply(*args)


class _NoCtx:
    """Stands in for autograd's ctx when no gradient is needed."""

    def save_for_backward(self, *args):
        pass


def items_above_by_level(
    scores: torch.Tensor, items: torch.Tensor, item_levels: torch.Tensor, item_valid: torch.Tensor, n_levels: int
) -> torch.Tensor:
    """For each item k: how many *other* items of each level score at least as high (Heaviside with
    H(0) = 1). (B, P, L+1) float, no gradient; O(P log P) per query by sorting, never P × P.

    Exact-step sums among ranked items follow: rank⁺(k) = 1 + Σ_{v ≥ ℓ_k} out[k, v] and the H-rank's
    Σ_j min(rel_j, rel_k)·H = Σ_v min(rel_v, rel_k)·out[k, v].
    """
    with torch.no_grad():
        x = scores.gather(1, items)  # (B, P)
        out = torch.zeros(*items.shape, n_levels + 1, dtype=scores.dtype, device=scores.device)
        inf = torch.tensor(float("inf"), dtype=x.dtype, device=x.device)
        for v in range(1, n_levels + 1):
            member = item_valid & (item_levels == v)
            if not bool(member.any()):
                continue
            u = torch.sort(torch.where(member, x, inf), dim=1).values
            below = torch.searchsorted(u, x.contiguous(), right=False)  # members scoring strictly less
            count = member.sum(dim=1, keepdim=True) - below - member.to(below.dtype)  # ≥ x, minus itself
            out[..., v] = count.to(out.dtype) * item_valid
        return out
