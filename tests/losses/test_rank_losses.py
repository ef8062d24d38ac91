"""Every rank loss: value and gradient against the plainly written formula; exact-step limits equal
rankopt.metrics; gradcheck; bad input."""

import pytest
import reference_losses as ref
import torch

from rankopt.losses import HAP, BlackBoxAP, Calibration, FastAP, SmoothAP, SupAP, SupNDCG, SupRecall, create_loss
from rankopt.losses.steps import Heaviside
from rankopt.metrics import rank_metrics


def batch(seed=0, n=12, d=6, n_classes=4, levels=1, lone=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(n, d, dtype=torch.float64, generator=g), dim=1)
    fine = torch.randint(0, n_classes, (n,), generator=g)
    if lone:
        fine[0] = n_classes + 3  # a query whose label has no other member
    if levels == 1:
        return x, fine
    cols = [fine] + [fine // (2 * c) for c in range(1, levels)]
    return x, torch.stack(cols, dim=1)


def value_and_grad(fn, x, *args, **kw):
    x = x.clone().requires_grad_()
    v = fn(x, *args, **kw)
    v.backward()
    return v.detach(), x.grad


def assert_same(ours, theirs, x, *args):
    v1, g1 = value_and_grad(ours, x, *args)
    v2, g2 = value_and_grad(theirs, x, *args)
    assert float(v1) == pytest.approx(float(v2), abs=1e-5)
    torch.testing.assert_close(g1.double(), g2, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("include_self", [True, False])
def test_supap(seed, include_self):
    x, y = batch(seed)
    assert_same(SupAP(include_self=include_self), lambda e, l: ref.supap(e, l, include_self=include_self), x, y)


def test_supap_published_offsets():
    x, y = batch(1)
    for start, offset in [(0.5, 1.44), (0.0, 1.0)]:
        step = lambda t, s=start, o=offset: ref.suprank_step(t, start=s, offset=o)
        assert_same(SupAP(start=start, offset=offset), lambda e, l: ref.supap(e, l, step=step), x, y)


@pytest.mark.parametrize("seed", range(2))
def test_smoothap(seed):
    x, y = batch(seed)
    assert_same(SmoothAP(), lambda e, l: ref.smoothap(e, l), x, y)
    assert_same(SmoothAP(tau=0.1), lambda e, l: ref.smoothap(e, l, tau=0.1), x, y)


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_hap(levels):
    x, y = batch(4, n=14, levels=levels)
    assert_same(HAP(), lambda e, l: ref.hap(e, l), x, y)


def test_hap_smooth_hrank():
    x, y = batch(4, n=14, levels=2)
    assert_same(HAP(smooth_hrank=True), lambda e, l: ref.hap(e, l, smooth_hrank=True), x, y)


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_supndcg(levels):
    x, y = batch(5, n=14, levels=levels)
    assert_same(SupNDCG(), lambda e, l: ref.supndcg(e, l), x, y)


def test_suprecall():
    x, y = batch(6, n=16)
    assert_same(SupRecall(), lambda e, l: ref.suprecall(e, l), x, y)
    assert_same(
        SupRecall(k=(1, 3), temperature=0.5), lambda e, l: ref.suprecall(e, l, ks=(1, 3), temperature=0.5), x, y
    )


def test_fastap_and_calibration():
    x, y = batch(7, n=14)
    assert_same(FastAP(), lambda e, l: ref.fastap(e, l), x, y)
    assert_same(FastAP(num_bins=5), lambda e, l: ref.fastap(e, l, num_bins=5), x, y)
    assert_same(Calibration(), lambda e, l: ref.calibration(e, l), x, y)


def test_with_reference_set():
    x, y = batch(8, n=10, lone=False)
    r, ry = batch(9, n=25, lone=False)
    v1, g1 = value_and_grad(lambda e: SupAP()(e, y, r, ry), x)
    v2, g2 = value_and_grad(lambda e: ref.supap(e, y, r, ry), x)
    assert float(v1) == pytest.approx(float(v2), abs=1e-6)
    torch.testing.assert_close(g1, g2, atol=1e-6, rtol=1e-5)
    x2, y2 = batch(8, n=10, levels=2, lone=False)
    r2, ry2 = batch(9, n=25, levels=2, lone=False)
    assert float(HAP()(x2, y2, r2, ry2)) == pytest.approx(float(ref.hap(x2, y2, r2, ry2)), abs=1e-6)


def test_ties_and_duplicates():
    x, y = batch(10, n=10, lone=False)
    x = torch.cat([x, x[:3]])  # exact duplicates: ties in every row
    y = torch.cat([y, y[:3]])
    assert_same(SupAP(), lambda e, l: ref.supap(e, l), x, y)
    assert_same(HAP(), lambda e, l: ref.hap(e, l), x, torch.stack([y, y // 2], 1))


def test_exact_steps_equal_metrics():
    """With the Heaviside step everywhere, SupAP = AP, HAP = H-AP, SupNDCG = NDCG, with the query in its list."""
    x, y = batch(11, n=20, levels=2, lone=False)
    s = x @ x.T
    lv = (y.unsqueeze(1) == y.unsqueeze(0)).sum(-1)
    metric = rank_metrics(s, lv, "ap,ndcg", ties="pessimistic", n_levels=2)
    for cls, name in [(SupAP, "ap"), (SupNDCG, "ndcg")]:
        loss = cls()
        loss.step = Heaviside()
        labels = y[:, 0] if cls is SupAP else y
        assert 1 - float(loss(x, labels)) == pytest.approx(float(metric[name].mean()), abs=1e-9)
    # without the query in the list: the metrics of evaluate(), where the query only counts in H-AP's relevance
    for cls, name in [(SupAP, "ap"), (HAP, "hap"), (SupNDCG, "ndcg")]:
        loss = cls(include_self=False)
        loss.step = Heaviside()
        labels = y[:, 0] if cls is SupAP else y
        want = []
        for i in range(20):
            others = torch.cat([torch.arange(i), torch.arange(i + 1, 20)])
            want.append(
                rank_metrics(s[i, others][None], lv[i, others][None], name, ties="pessimistic", n_levels=2)[name]
            )
        assert 1 - float(loss(x, labels)) == pytest.approx(float(torch.cat(want).nanmean()), abs=1e-9), name


def test_supap_bounds_ap_from_below():
    for seed in range(5):
        x, y = batch(seed, n=24, lone=False)
        exact = SupAP()
        exact.step = Heaviside()
        assert 1 - float(SupAP()(x, y)) <= 1 - float(exact(x, y)) + 1e-12


@pytest.mark.parametrize("loss", [SupAP(), SmoothAP(tau=0.1), HAP(), SupNDCG(), SupRecall()])
def test_gradcheck(loss):
    x, y = batch(12, n=8, d=4, levels=2 if loss.hierarchical else 1, lone=False)
    x = (x * 3).requires_grad_()  # unnormalised: scores spread over several units of delta
    assert torch.autograd.gradcheck(lambda e: loss(e, y), (x,), eps=1e-7, atol=1e-5)


def test_query_without_positive_is_left_out_never_nan():
    x, y = batch(13, n=10, lone=False)
    r, ry = batch(14, n=12, lone=False)
    ry = ry + 100  # no query label appears in the reference set
    ry[0] = y[0]
    for loss in [SupAP(), SmoothAP(), SupRecall(), FastAP(), BlackBoxAP()]:
        v = loss(x.float().requires_grad_(), y, r.float(), ry)
        assert torch.isfinite(v)
    v = SupAP()(x.float().requires_grad_(), y, r.float(), ry + 1000)  # nobody has a positive
    assert float(v) == 0.0 and v.requires_grad


def test_half_precision_inputs():
    x, y = batch(15, n=16)
    for dtype in (torch.float16, torch.bfloat16):
        v = SupAP()(x.to(dtype).requires_grad_(), y)
        assert v.dtype == torch.float32 and torch.isfinite(v)


def test_memory_budget_does_not_change_results():
    x, y = batch(16, n=30, levels=2, lone=False)
    for cls in (SupAP, HAP, SmoothAP):
        lab = y if cls.hierarchical else y[:, 0]
        big = value_and_grad(cls(), x, lab)
        small = value_and_grad(cls(memory_budget=2000), x, lab)
        assert float(big[0]) == pytest.approx(float(small[0]), abs=1e-12)
        torch.testing.assert_close(big[1], small[1])


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: SupAP()(torch.randn(4, 3), torch.tensor([0, 1, 0])), "labels has 3 rows"),
        (lambda: SupAP()(torch.full((3, 2), float("nan")), torch.tensor([0, 1, 0])), "NaN"),
        (lambda: SupAP()(torch.randn(3, 2), torch.tensor([0.0, 1.0, 0.0])), "integer"),
        (lambda: SupAP()(torch.randn(3, 2), torch.zeros(3, 2, dtype=torch.int64)), "flat labels"),
        (lambda: SupAP()(torch.randn(3, 2), torch.zeros(3, dtype=torch.int64), torch.randn(4, 2)), "both"),
        (
            lambda: SupAP()(
                torch.randn(3, 2),
                torch.zeros(3, dtype=torch.int64),
                torch.randn(4, 5),
                torch.zeros(4, dtype=torch.int64),
            ),
            "dimension",
        ),
        (lambda: create_loss("supapp"), "did you mean supap"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_blackbox_ap_value_and_gradient_direction():
    x, y = batch(17, n=16, lone=False)
    loss = BlackBoxAP(margin=0.0)
    x = x.float().requires_grad_()
    v = loss(x, y)
    s = (x @ x.T).detach()
    lv = (y[:, None] == y[None]).long()
    assert 1 - float(v) == pytest.approx(float(rank_metrics(s, lv, "ap", ties="pessimistic")["ap"].mean()), abs=1e-4)
    v.backward()
    # a gradient step must not lower AP
    x2 = torch.nn.functional.normalize(x - 0.5 * x.grad, dim=1).detach()
    assert float(loss(x2, y)) <= float(v) + 1e-6


def _duplicates_under_other_labels(seed=12, n=12):
    """Embeddings whose first three rows reappear under other labels: each of those positives is tied
    (t = 0 exactly) with a negative in its queries' rankings."""
    x, y = batch(seed, n=n, lone=False)
    n_classes = int(y.max()) + 1
    return torch.cat([x, x[:3]]), torch.cat([y, (y[:3] + 1) % n_classes])


def test_heaviside_counts_a_tied_negative_as_above():
    """H(0) = 1: a negative tied with a positive ranks above it, so with exact steps 1 − SupAP is the
    *pessimistic* AP (query in its own list), not the optimistic one."""
    x, y = _duplicates_under_other_labels()
    s = x @ x.T
    lv = (y.unsqueeze(1) == y.unsqueeze(0)).long()
    pessimistic = rank_metrics(s, lv, "ap", ties="pessimistic", n_levels=1)["ap"].mean()
    optimistic = rank_metrics(s, lv, "ap", ties="optimistic", n_levels=1)["ap"].mean()
    assert float(optimistic) > float(pessimistic) + 1e-3  # the ties matter here
    loss = SupAP()
    loss.step = Heaviside()
    assert 1 - float(loss(x, y)) == pytest.approx(float(pessimistic), abs=1e-9)


def test_suprank_step_at_a_tie_with_a_negative():
    """At t = 0 exactly the SupRank step is σ(0) = 0.5, without ``start`` (added only for t > 0)."""
    x, y = _duplicates_under_other_labels()
    assert_same(SupAP(), lambda e, l: ref.supap(e, l), x, y)
    from rankopt.losses.steps import SupRankStep

    assert float(SupRankStep().value(torch.zeros(1))) == 0.5
