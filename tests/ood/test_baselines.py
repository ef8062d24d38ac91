"""The classical detectors against hand computations from their papers' formulas, and against
pytorch-ood on the same features."""

import numpy as np
import pytest
import torch
from scipy.special import logsumexp, softmax
from scipy.stats import multivariate_normal

from rankopt.ood import Features, create_detector, ood_metrics
from rankopt.ood.gaussian import fit_tied_gaussian


def _logits(feats, head):
    return feats.features @ head.weight.numpy().T + head.bias.numpy()


def test_logit_detectors_by_their_formulas(toy):
    train, test, _ = toy
    logits = _logits(test, train.head)
    p = softmax(logits, axis=1)
    expected = {
        "msp": -p.max(1),
        "maxlogit": -logits.max(1),
        "energy": -logsumexp(logits, axis=1),
        "gen": np.mean(np.clip(p, 1e-7, 1 - 1e-7) ** 0.1 * (1 - np.clip(p, 1e-7, 1 - 1e-7)) ** 0.1, axis=1),
    }
    for name, want in expected.items():
        assert np.allclose(create_detector(name).fit(train).score(test), want, atol=1e-10), name


def test_stored_logits_are_used_when_given(toy):
    train, test, _ = toy
    given = np.random.default_rng(0).normal(size=(len(test), 4))
    scored = Features(test.features, logits=given)
    assert np.allclose(create_detector("maxlogit").fit(train).score(scored), -given.max(1))


def _hand_gaussian(x, y):
    classes = np.unique(y)
    mu = np.stack([x[y == c].mean(0) for c in classes])
    centred = x - mu[y]
    cov = centred.T @ centred / len(x)
    return mu, cov, np.linalg.inv(cov)


def test_mahalanobis_by_hand(toy):
    train, test, _ = toy
    mu, _, prec = _hand_gaussian(train.features, train.labels)
    want = np.min([np.einsum("nd,de,ne->n", test.features - m, prec, test.features - m) for m in mu], axis=0)
    assert np.allclose(create_detector("mahalanobis").fit(train).score(test), want, rtol=1e-8)


def test_relative_mahalanobis_by_hand(toy):
    train, test, _ = toy
    mu, _, prec = _hand_gaussian(train.features, train.labels)
    m0 = train.features.mean(0)
    prec0 = np.linalg.inv(np.cov(train.features.T, bias=True))
    md0 = np.einsum("nd,de,ne->n", test.features - m0, prec0, test.features - m0)
    want = np.min([np.einsum("nd,de,ne->n", test.features - m, prec, test.features - m) - md0 for m in mu], axis=0)
    assert np.allclose(create_detector("rmd").fit(train).score(test), want, rtol=1e-7, atol=1e-7)


def test_gmm_prior_is_the_negative_mixture_log_density(toy):
    train, test, _ = toy
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)
    x, y = unit(train.features), train.labels
    mu, cov, _ = _hand_gaussian(x, y)
    w = np.bincount(y) / len(y)
    dens = sum(w[c] * multivariate_normal(mu[c], cov).pdf(unit(test.features)) for c in range(len(mu)))
    assert np.allclose(create_detector("gmm").fit(train).score(test), -np.log(dens), rtol=1e-8)


def test_gmm_sampler_reproduces_means_and_shared_covariance():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [100, 300, 600])
    x = rng.normal(size=(1000, 3)) @ np.array([[1, 0.5, 0], [0, 1, 0.3], [0, 0, 0.5]]) + 3 * np.eye(3)[y]
    g = fit_tied_gaussian(x, y, normalize=False)
    gen = torch.Generator().manual_seed(0)
    classes = torch.multinomial(g.log_weights.exp(), 200_000, replacement=True, generator=gen)
    samples = g.sample(200_000, gen, classes).numpy()
    counts = np.bincount(classes.numpy()) / 200_000
    assert np.allclose(counts, [0.1, 0.3, 0.6], atol=0.005)  # mixture weights ∝ class counts
    for c in range(3):
        assert np.allclose(samples[classes.numpy() == c].mean(0), g.means[c].numpy(), atol=0.02)
    centred = samples - g.means.numpy()[classes.numpy()]
    assert np.allclose(centred.T @ centred / len(samples), g.cov.numpy(), atol=0.02)
    assert np.allclose(g.cov.numpy(), _hand_gaussian(x, y)[1])


def test_knn_is_the_kth_neighbour_distance(toy):
    from sklearn.neighbors import NearestNeighbors

    train, test, _ = toy
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)
    nn = NearestNeighbors(n_neighbors=7).fit(unit(train.features))
    want = nn.kneighbors(unit(test.features))[0][:, -1]
    assert np.allclose(create_detector("knn", k=7).fit(train).score(test), want, atol=1e-5)
    with pytest.raises(ValueError, match="k=801 exceeds the 800 ID training features"):
        create_detector("knn", k=801).fit(train)


def test_activation_shaping_by_hand(toy):
    train, test, _ = toy
    w, b = train.head.weight.numpy(), train.head.bias.numpy()
    z = test.features
    energy = lambda f: -logsumexp(f @ w.T + b, axis=1)
    t = np.percentile(train.features.ravel(), 90)
    assert np.allclose(create_detector("react").fit(train).score(test), energy(np.minimum(z, t)))
    k = z.shape[1] - round(z.shape[1] * 0.9)  # ASH-S at 90%: keep the k largest per row
    kept = np.where(z >= np.sort(z, axis=1)[:, -k][:, None], z, 0)
    assert np.allclose(
        create_detector("ash").fit(train).score(test), energy(kept * np.exp(z.sum(1) / kept.sum(1))[:, None])
    )
    k = z.shape[1] - round(z.shape[1] * 0.85)
    top = np.sort(z, axis=1)[:, -k:].sum(1)
    assert np.allclose(create_detector("scale").fit(train).score(test), energy(z * np.exp(z.sum(1) / top)[:, None]))


def test_vim_by_hand(toy):
    train, test, _ = toy
    w, b = train.head.weight.numpy(), train.head.bias.numpy()
    u = -np.linalg.pinv(w) @ b
    xc = train.features - u
    vals, vecs = np.linalg.eigh(xc.T @ xc / len(xc))
    basis = vecs[:, : 12 - 5]  # principal dim 5 of 12: the 7 least-variance directions
    alpha = (train.features @ w.T + b).max(1).mean() / np.linalg.norm(xc @ basis, axis=1).mean()
    want = alpha * np.linalg.norm((test.features - u) @ basis, axis=1) - logsumexp(test.features @ w.T + b, axis=1)
    assert np.allclose(create_detector("vim", principal_dim=5).fit(train).score(test), want, rtol=1e-6)


# ---- pytorch-ood on the same features -----------------------------------------------------------

pood = pytest.importorskip("pytorch_ood.detector")


def _auroc(name, train, test, ood, **options):
    det = create_detector(name, **options).fit(train)
    return ood_metrics(det.score(test), det.score(ood))["auroc"], det.score(test)


def test_same_scores_as_pytorch_ood(toy):
    train, test, ood = toy
    logits = torch.as_tensor(_logits(test, train.head))
    z_train, z_test = torch.as_tensor(train.features), torch.as_tensor(test.features)
    y = torch.as_tensor(train.labels)
    ours = lambda name, **o: create_detector(name, **o).fit(train).score(test)
    assert np.allclose(ours("msp"), pood.MaxSoftmax.score(logits).numpy())
    assert np.allclose(ours("maxlogit"), pood.MaxLogit.score(logits).numpy())
    assert np.allclose(ours("energy"), pood.EnergyBased.score(logits).numpy())
    assert np.allclose(ours("gen"), pood.GEN.score(logits, gamma=0.1).numpy())
    # pytorch-ood's covariances are sums (not means) plus 1e-6·I: its distances are ours / N
    n = len(train)
    maha = pood.Mahalanobis(None).fit_features(z_train.float(), y)  # float32 only
    assert np.allclose(maha.predict_features(z_test.float()).numpy() * 2 * n, ours("mahalanobis"), rtol=1e-3)  # ½·d/N
    rmd = pood.RMD(None).fit_features(z_train.float(), y)
    assert np.allclose(rmd.predict_features(z_test.float()).numpy() * n, ours("rmd"), rtol=1e-3, atol=1e-2)
    knn = pood.KNN(None, k=10).fit_features(z_train.float(), y)
    assert np.allclose(knn.predict_features(z_test.float()).numpy(), ours("knn", k=10), atol=1e-5)
    vim = pood.ViM(None, d=5, w=train.head.weight.float(), b=train.head.bias.float()).fit_features(z_train.float(), y)
    assert np.allclose(
        vim.predict_features(z_test.float()).numpy(), ours("vim", principal_dim=5), rtol=1e-3, atol=2e-3
    )  # float32 there
    lin = torch.nn.Linear(12, 4).double()
    with torch.no_grad():
        lin.weight.copy_(train.head.weight)
        lin.bias.copy_(train.head.bias)
    head = lambda m: lin(m.flatten(1))
    maps = z_test[:, :, None, None]
    react = pood.ReAct(None, head, percentile=0.9).fit_feature_maps(z_train[:, :, None, None], y)
    assert np.allclose(react.predict_feature_maps(maps).detach().numpy(), ours("react"))
    ash = pood.ASH(None, head, percentile=0.9)
    assert np.allclose(ash.predict_feature_maps(maps).detach().numpy(), ours("ash"))
    scale = pood.SCALE(None, head, percentile=0.85)
    assert np.allclose(scale.predict_feature_maps(maps).detach().numpy(), ours("scale"))


def test_dead_feature_channels_do_not_break_the_gaussians(toy):
    # a ReLU channel that never fires makes the covariance singular: the ridge keeps that direction
    # out of the distances, so the scores equal those without the channel
    train, test, _ = toy
    pad = lambda f: Features(np.c_[f.features, np.zeros(len(f))], labels=f.labels)
    for name in ("mahalanobis", "rmd"):
        with_dead = create_detector(name).fit(pad(train)).score(pad(test))
        assert np.allclose(with_dead, create_detector(name).fit(train).score(test), rtol=1e-6), name


def test_logits_need_a_head_or_stored_logits(toy):
    train, test, _ = toy
    with pytest.raises(ValueError, match="needs logits"):
        create_detector("energy").fit(Features(train.features, labels=train.labels))
    det = create_detector("energy").fit(Features(train.features, logits=_logits(train, train.head)))
    with pytest.raises(ValueError, match="the scored features carry none and the ID training features had no head"):
        det.score(Features(test.features))
