"""HEAT: the residual MLP (distinct vs the authors' tied layers), the CD loss's direction, SGLD on a
known prior, the hybrid energy, the composition (z-scoring, β), fitting and reloading."""

import math

import numpy as np
import pytest
import torch

from rankopt.ood import Composition, Detector, Features, create_detector, load_detector, save_detector
from rankopt.ood.gaussian import fit_tied_gaussian
from rankopt.ood.heat import ResidualMLP, cd_loss, compose, sgld

FAST = dict(epochs=1, hidden=16, n_hidden=2, steps=3, batch_size=128)


def test_residual_mlp_distinct_or_tied_layers():
    distinct, tied = ResidualMLP(8, 32, 4), ResidualMLP(8, 32, 4, tied=True)
    n_hidden = 32 * 32 + 32
    assert sum(p.numel() for p in distinct.parameters()) - sum(p.numel() for p in tied.parameters()) == 3 * n_hidden
    assert tied.hidden[0] is tied.hidden[3] and distinct.hidden[0] is not distinct.hidden[3]
    assert len(tied.hidden) == 4  # the tied block is still applied four times
    z = torch.randn(5, 8)
    with torch.no_grad():
        h = tied.act(tied.first(z))
        for _ in range(4):
            h = tied.act(tied.hidden[0](h))
        assert torch.allclose(tied(z), tied.last(h).squeeze(1))


def test_cd_loss_lowers_real_energies_and_raises_negative_ones():
    torch.manual_seed(0)
    mlp = ResidualMLP(4, 16, 1)
    real, neg = torch.randn(64, 4) + 2, torch.randn(64, 4) - 2
    before_real, before_neg = mlp(real).mean().item(), mlp(neg).mean().item()
    opt = torch.optim.SGD(mlp.parameters(), lr=1e-2)
    loss = cd_loss(mlp(real), mlp(neg), l2=0.0)
    loss.backward()
    opt.step()
    with torch.no_grad():
        assert mlp(real).mean().item() < before_real and mlp(neg).mean().item() > before_neg
    # the regulariser pulls both energies towards 0: its gradient on e is 2λe/n
    e_r, e_n = torch.tensor([3.0, 1.0], requires_grad=True), torch.tensor([-2.0], requires_grad=True)
    cd_loss(e_r, e_n, l2=0.5).backward()
    assert torch.allclose(e_r.grad, torch.tensor([0.5 + 0.5 * 2 * 3.0 / 2, 0.5 + 0.5 * 2 * 1.0 / 2]))
    assert torch.allclose(e_n.grad, torch.tensor([-1.0 + 0.5 * 2 * -2.0]))


def test_sgld_on_a_gaussian_prior_settles_near_its_modes():
    rng = np.random.default_rng(0)
    y = np.arange(600) % 3
    means = np.array([[4.0, 0.0], [0.0, 4.0], [-4.0, -4.0]])
    g = fit_tied_gaussian(means[y] + 0.3 * rng.normal(size=(600, 2)), y, normalize=False)
    energy = lambda z: -g.log_density(z)
    gen = torch.Generator().manual_seed(0)
    start = 3 * torch.randn(500, 2, generator=gen, dtype=torch.float64)
    out = sgld(start, energy, steps=300, step_size=0.02, noise=0.01, project=lambda z: z, generator=gen)
    nearest = torch.cdist(out, g.means).amin(1)
    assert nearest.median() < 0.3 and torch.cdist(start, g.means).amin(1).median() > 1.0
    # the projections are applied after every step: ReLU and the sphere
    out = sgld(
        start,
        energy,
        steps=5,
        step_size=0.02,
        noise=0.01,
        project=lambda z: torch.nn.functional.normalize(z.clamp_min(0), dim=1),
        generator=gen,
    )
    assert (out >= 0).all() and torch.allclose(
        out.norm(dim=1)[out.norm(dim=1) > 0], torch.tensor(1.0, dtype=torch.float64)
    )


def test_hybrid_energy_is_prior_over_temperature_plus_residual(toy):
    train, test, _ = toy
    det = create_detector("heat_gmm", **FAST).fit(train)
    prior = create_detector("gmm").fit(train).score(test)
    z = torch.nn.functional.normalize(torch.as_tensor(test.features), dim=1)
    with torch.no_grad():
        residual = det.mlp(z.float()).double().numpy()
    assert np.allclose(det.score(test), prior / det.prior_scale + residual, rtol=1e-5, atol=1e-5)
    # T_prior "auto": the prior energy has unit standard deviation over the ID training features
    on_train = create_detector("gmm").fit(train).score(train)
    assert det.prior_scale == pytest.approx(on_train.std(ddof=1), rel=1e-6)
    fixed = create_detector("heat_gmm", prior_temperature=1000.0, **FAST).fit(train)
    assert fixed.prior_scale == 1000.0


class Column(Detector):
    """Test detector: a·feature[0] + b (an energy one can rescale affinely)."""

    name = "column"
    _state = ()

    def __init__(self, column=0, a=1.0, b=0.0):
        super().__init__(column=column, a=a, b=b)
        self.column, self.a, self.b = column, a, b

    def _fit(self, train):
        pass

    def _score(self, x, start, stop):
        return torch.as_tensor(self.a * x.features[start:stop, self.column] + self.b)


def _composition(members, beta=0.0):
    comp = Composition(components=["gmm"], beta=beta)
    comp.members = members
    return comp


def test_composition_is_invariant_to_affine_rescaling_of_an_energy(toy):
    train, test, _ = toy
    base = _composition([Column(0), Column(1)]).fit(train).score(test)
    rescaled = _composition([Column(0, a=37.0, b=-5.0), Column(1, a=0.01, b=1e3)]).fit(train).score(test)
    assert np.allclose(base, rescaled, atol=1e-9)
    # and it is the sum of the z-scored energies (z-scored on the ID training features)
    x = train.features
    want = sum((test.features[:, c] - x[:, c].mean()) / x[:, c].std(ddof=1) for c in (0, 1))
    assert np.allclose(base, want)


def test_composition_beta():
    e = [torch.tensor([1.0, -2.0]), torch.tensor([0.5, 3.0])]
    assert torch.allclose(compose(e, 0.0), torch.tensor([1.5, 1.0]))
    assert torch.allclose(compose(e, math.inf), torch.tensor([1.0, 3.0]))
    assert torch.allclose(compose(e, -math.inf), torch.tensor([0.5, -2.0]))
    assert torch.allclose(compose(e, 2.0), torch.logsumexp(2 * torch.stack(e, 1), 1) / 2)
    assert torch.allclose(compose(e, 200.0), torch.tensor([1.0, 3.0]), atol=0.01)  # soft max → max


def test_heat_fits_reloads_and_reuses_fitted_members(toy, tmp_path):
    train, test, ood = toy
    options = {n: FAST for n in ("heat_gmm", "heat_gmm_std", "heat_el")}
    heat = create_detector("heat", component_options=options).fit(train)
    assert [m.name for m in heat.members] == ["heat_gmm", "heat_gmm_std", "heat_el"]
    save_detector(heat, tmp_path / "heat.pt")
    back = load_detector(tmp_path / "heat.pt")
    assert np.array_equal(back.score(test), heat.score(test))
    # a composition handed fitted members calibrates only: the members are not trained again
    member = heat.members[0]
    weights = [p.clone() for p in member.mlp.parameters()]
    comp = _composition([member, Column(0)]).fit(train)
    assert all(torch.equal(a, b) for a, b in zip(weights, member.mlp.parameters()))
    assert comp.score(test).shape == (len(test),)


def test_heat_leaves_out_members_the_features_cannot_feed(toy, caplog):
    train, test, _ = toy
    no_std = Features(train.features, labels=train.labels, head=train.head)
    options = {n: FAST for n in ("heat_gmm", "heat_gmm_std", "heat_el")}
    heat = create_detector("heat", component_options=options).fit(no_std)
    assert heat.options["components"] == ["heat_gmm", "heat_el"]
    assert "heat_gmm_std left out" in caplog.text
    with pytest.raises(ValueError, match="needs std-pooled features"):
        create_detector("heat_gmm_std", **FAST).fit(no_std)
    with pytest.raises(ValueError, match="none of heat_gmm, heat_gmm_std, heat_el can be fitted .*heat_el needs head"):
        create_detector("heat", component_options=options).fit(Features(train.features))


def test_seeded_fit_is_reproducible(toy):
    train, test, _ = toy
    a = create_detector("heat_el", **FAST).fit(train).score(test)
    b = create_detector("heat_el", **FAST).fit(train).score(test)
    assert np.array_equal(a, b)


def test_detector_errors(toy):
    train, test, _ = toy
    with pytest.raises(ValueError, match="not fitted"):
        create_detector("gmm").score(test)
    fitted = create_detector("gmm").fit(train)
    with pytest.raises(ValueError, match="features have dimension 3 but detector gmm was fitted on 12"):
        fitted.score(Features(np.ones((2, 3))))
    with pytest.raises(ValueError, match="unknown OOD detector 'hea'"):
        create_detector("hea")
    with pytest.raises(
        ValueError, match="detector heat_gmm has no option 'epoch' \\(did you mean epochs\\?\\); its options: hidden"
    ):
        create_detector("heat_gmm", epoch=3)
    with pytest.raises(ValueError, match="prior_temperature must be 'auto' or > 0"):
        create_detector("heat_gmm", prior_temperature=-1)


def test_sgld_step_sizes_decay_to_a_tenth_with_power_two():
    # a linear energy a·z has the constant gradient a: without noise, z moves by −a Σ_t η_t
    a = torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    out = sgld(
        torch.zeros(1, 2, dtype=torch.float64),
        lambda z: (z * a).sum(1),
        steps=4,
        step_size=0.5,
        noise=0.0,
        project=lambda z: z,
    )
    etas = [(0.5 - 0.05) * (1 - t / 4) ** 2 + 0.05 for t in range(4)]  # 0.5, 0.303125, 0.1625, 0.078125
    assert torch.allclose(out, -a * sum(etas))
    # the noise decays the same way: its variance sums σ_t²
    gen = torch.Generator().manual_seed(0)
    moved = sgld(
        torch.zeros(20000, 1, dtype=torch.float64),
        lambda z: 0 * z.sum(1),
        steps=4,
        step_size=0.0,
        noise=0.5,
        project=lambda z: z,
        generator=gen,
    )
    assert float(moved.var()) == pytest.approx(sum(e * e for e in etas), rel=0.03)


def test_negatives_are_the_moved_samples_and_their_starting_proposals(toy, monkeypatch):
    from rankopt.ood import heat as heat_module

    seen = []
    real_loss = heat_module.cd_loss
    monkeypatch.setattr(heat_module, "cd_loss", lambda r, n, l2: seen.append((len(r), len(n))) or real_loss(r, n, l2))
    train, _, _ = toy
    create_detector("heat_gmm", **FAST).fit(train)
    assert seen and all(n == 2 * r for r, n in seen)


def test_projection_follows_the_features(toy):
    train, _, _ = toy
    det = create_detector("heat_el", **FAST).fit(train)  # ReLU features: non-negative
    assert det.nonnegative and (det.project(torch.tensor([[-1.0, 2.0]])) == torch.tensor([[0.0, 2.0]])).all()
    signed = Features(train.features - 1.0, labels=train.labels, head=train.head)
    det = create_detector("heat_el", **FAST).fit(signed)
    assert not det.nonnegative and (det.project(torch.tensor([[-1.0, 2.0]])) == torch.tensor([[-1.0, 2.0]])).all()
    gmm = create_detector("heat_gmm", **FAST).fit(train)  # normalised prior: back to the sphere too
    assert torch.allclose(gmm.project(torch.tensor([[-1.0, 3.0, 4.0]])), torch.tensor([[0.0, 0.6, 0.8]]))
