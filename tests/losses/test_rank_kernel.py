"""The rank kernel against its definition written as a loop:
out[i, k] = Σ_{j ≠ k} sel(ℓ_j, ℓ_k) · w(ℓ_j, ℓ_k) · step(s_ij − s_ik), value and gradient, for every
selector, over all references or a candidate index, with and without per-level weights."""

import pytest
import torch

from rankopt.losses.rank_kernel import SELECTORS, pair_sums
from rankopt.losses.steps import Sigmoid, SupRankStep

SELECT = {
    "lower": lambda a, b: a < b,
    "not_lower": lambda a, b: a >= b,
    "higher": lambda a, b: a > b,
    "not_higher": lambda a, b: a <= b,
    "all": lambda a, b: True,
}


def loop(scores, items, item_levels, valid, step, selector, cand_levels, cand_index=None, weights=None, grad_out=None):
    """(values, d(Σ grad_out · values)/d scores): the gradient by the chain rule, pair by pair, with the
    step's derivative (itself checked against finite differences below)."""
    B, P = items.shape
    out = torch.zeros(B, P, dtype=scores.dtype)
    grad = torch.zeros_like(scores)
    for i in range(B):
        cands = range(scores.shape[1]) if cand_index is None else cand_index[i].tolist()
        for k in range(P):
            if not valid[i, k]:
                continue
            item = int(items[i, k])
            total = scores.new_zeros(())
            for c_pos, j in enumerate(cands):
                lj = int(cand_levels[i, c_pos if cand_index is not None else j])
                lk = int(item_levels[i, k])
                if j == item or lj < 0 or not SELECT[selector](lj, lk):
                    continue
                w = 1.0 if weights is None else min(float(weights[i, lj]), float(weights[i, lk]))
                t = (scores[i, j] - scores[i, item]).reshape(1)
                total = total + w * step.value(t)[0]
                if grad_out is not None:
                    d = w * float(step.derivative(t)[0]) * float(grad_out[i, k])
                    grad[i, j] += d
                    grad[i, item] -= d
            out[i, k] = total
    return out, grad


def case(seed=0, B=3, N=9, L=2):
    """Scores, and as ranked items every reference with relevance (level >= 1), padded — the kernel's
    contract (its fast path subtracts the pairs among them); reference 1 of query 0 is ignored (-1)."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(B, N, dtype=torch.float64, generator=g)
    levels = torch.randint(0, L + 1, (B, N), generator=g)
    levels[:, 0] = L  # at least one relevant item per query
    levels[0, 1] = -1
    ranked = [torch.nonzero(levels[i] >= 1).squeeze(1) for i in range(B)]
    P = max(len(r) for r in ranked)
    items = torch.zeros(B, P, dtype=torch.int64)
    valid = torch.zeros(B, P, dtype=torch.bool)
    for i, r in enumerate(ranked):
        items[i, : len(r)], valid[i, : len(r)] = r, True
    item_levels = torch.where(valid, levels.gather(1, items), torch.zeros_like(items))
    weights = torch.rand(B, L + 1, dtype=torch.float64, generator=g)
    return scores, items, item_levels, valid, levels, weights


@pytest.mark.parametrize("selector", SELECTORS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("step", [Sigmoid(0.1), SupRankStep()])
def test_pair_sums_equal_their_definition(selector, weighted, step):
    scores, items, item_levels, valid, levels, weights = case()
    w = weights if weighted else None
    s1 = scores.clone().requires_grad_()
    got = pair_sums(s1, items, item_levels, valid, step, selector, cand_levels=levels, weights=w, memory_budget=2000)
    g = torch.randn(got.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * valid
    want, want_grad = loop(scores, items, item_levels, valid, step, selector, levels, weights=w, grad_out=g)
    torch.testing.assert_close(got * valid, want)
    (got * g).sum().backward()
    torch.testing.assert_close(s1.grad, want_grad)


@pytest.mark.parametrize("step", [Sigmoid(0.1), SupRankStep()])
def test_step_derivative_is_the_slope_of_its_value(step):
    t = torch.linspace(-0.5, 0.5, 101, dtype=torch.float64)
    t = t[(t.abs() > 1e-3) & ((t - step.delta).abs() > 1e-3)] if hasattr(step, "delta") else t  # off the kinks
    h = 1e-6
    slope = (step.value(t + h) - step.value(t - h)) / (2 * h)
    torch.testing.assert_close(step.derivative(t), slope, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("selector", SELECTORS)
def test_pair_sums_over_a_candidate_index(selector):
    scores, items, item_levels, valid, levels, _ = case(seed=2)
    cand_index = torch.stack([torch.randperm(9, generator=torch.Generator().manual_seed(i))[:6] for i in range(3)])
    cand_levels = levels.gather(1, cand_index)
    got = pair_sums(
        scores, items, item_levels, valid, Sigmoid(0.1), selector, cand_levels=cand_levels, cand_index=cand_index
    )
    want, _ = loop(scores, items, item_levels, valid, Sigmoid(0.1), selector, cand_levels, cand_index=cand_index)
    torch.testing.assert_close(got * valid, want)


def test_float32_scores_keep_their_dtype():
    scores, items, item_levels, valid, levels, _ = case()
    for selector in ("all", "lower"):
        out = pair_sums(scores.float(), items, item_levels, valid, Sigmoid(0.1), selector, cand_levels=levels)
        assert out.dtype == torch.float32
