"""A rankopt loss dropped into a pytorch-metric-learning training loop: PML's call convention,
un-normalised embeddings, and the PML program of the README (loss and AccuracyCalculator swapped)."""

import pytest
import torch
from torch.nn.functional import normalize

from rankopt.losses import HAPPIER, ROADMAP, CrossBatchMemory, SupAP, create_loss

FLAT = ["SmoothAP", "SupAP", "FastAP", "BlackBoxAP", "Calibration", "ROADMAP", "SupRecall"]


def deterministic(name, **kwargs):
    """The loss, without BlackBoxAP's random margin noise (so two calls can be compared)."""
    return create_loss(name, **({"margin": 0.0} if name == "BlackBoxAP" else {}), **kwargs)


def batch(seed=0, b=16, d=8, scale=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, generator=g)
    if scale:  # row norms from 0.1 to 20, as a PML user's raw embeddings
        x = x * torch.logspace(-1, 1.3, b).unsqueeze(1)
    return x, torch.randint(0, 4, (b,), generator=g)


def grad_of(loss, x, *args, **kwargs):
    x = x.clone().requires_grad_()
    value = loss(x, *args, **kwargs)
    value.backward()
    return float(value), x.grad


@pytest.mark.parametrize("name", FLAT)
def test_pml_call_forms_equal_rankopt_form(name):
    loss = deterministic(name)
    x, y = batch()
    ref, ref_y = batch(seed=1)
    want = float(loss(x, y, ref, ref_y))
    assert float(loss(x, y, ref_emb=ref, ref_labels=ref_y)) == want
    assert float(loss(x, y, None, ref, ref_y)) == want  # PML positional: indices_tuple, ref_emb, ref_labels
    assert float(loss(x, y, indices_tuple=None, ref_emb=ref, ref_labels=ref_y)) == want
    assert float(loss(embeddings=x, labels=y, ref_embeddings=ref, ref_labels=ref_y)) == want
    assert float(loss(x, y, None, None)) == float(loss(x, y))


def test_a_miner_output_is_refused_with_the_reason():
    from pytorch_metric_learning.miners import MultiSimilarityMiner

    x, y = batch()
    mined = MultiSimilarityMiner()(x, y)
    for call in (lambda: SupAP()(x, y, mined), lambda: SupAP()(x, y, indices_tuple=mined)):
        with pytest.raises(ValueError, match="no miner output"):
            call()
    with pytest.raises(TypeError, match="not both"):
        SupAP()(x, y, ref_embeddings=x, ref_emb=x, ref_labels=y)
    with pytest.raises(TypeError, match="both by position and by name"):
        SupAP()(x, y, x, y, ref_labels=y)


@pytest.mark.parametrize("name", FLAT + ["HAP", "SupNDCG"])
def test_raw_embeddings_are_normalised_by_default(name):
    loss = deterministic(name)
    x, y = batch()
    if loss.hierarchical:
        y = torch.stack([y, y // 2], 1)
    unit = normalize(x, dim=1)
    value, _ = grad_of(loss, x, y)
    assert value == pytest.approx(float(loss(unit, y)), abs=1e-6)
    # the gradient is the one through an explicit normalisation
    xr = x.clone().requires_grad_()
    loss(normalize(xr, dim=1), y).backward()
    _, g = grad_of(loss, x, y)
    torch.testing.assert_close(g, xr.grad, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", FLAT)
def test_normalize_false_ranks_raw_dot_products(name):
    x, y = batch()
    raw = float(deterministic(name, normalize=False)(x, y))
    assert raw != pytest.approx(float(deterministic(name)(x, y)), abs=1e-3)  # the option is used, not ignored
    # the default on raw embeddings is normalize=False on their unit vectors
    assert float(deterministic(name, normalize=False)(normalize(x, dim=1), y)) == pytest.approx(
        float(deterministic(name)(x, y)), abs=1e-6
    )


def test_unit_norm_embeddings_keep_their_exact_gradient():
    """A model that normalises itself: the loss must not re-project its gradient (the authors' code
    ranks the given unit vectors as they are)."""
    x, y = batch(scale=False)
    unit = normalize(x, dim=1)
    _, g_default = grad_of(SupAP(), unit, y)
    _, g_raw = grad_of(SupAP(normalize=False), unit, y)
    assert torch.equal(g_default, g_raw)
    assert float((g_raw * unit).sum(dim=1).abs().max()) > 1e-4  # a radial part exists, and is kept


def test_reference_set_is_normalised_too():
    x, y = batch()
    ref, ref_y = batch(seed=3)
    assert float(SupAP()(x, y, ref, ref_y)) == pytest.approx(
        float(SupAP()(normalize(x, dim=1), y, normalize(ref, dim=1), ref_y)), abs=1e-6
    )


def test_wrappers_and_combinations_take_the_pml_call():
    x, y = batch()
    memory = CrossBatchMemory(ROADMAP(), size=64)
    assert torch.isfinite(memory(x, y))
    with pytest.raises(ValueError, match="no miner output"):
        memory(x, y, (y, y, y))
    happier = HAPPIER(num_classes=4, dim=8)
    assert torch.isfinite(happier(x, torch.stack([y, y // 2], 1)))


def test_the_pml_program_with_the_loss_swapped():
    """The training loop of PML's examples, unchanged but for the loss; evaluated by PML's own
    AccuracyCalculator and by rankopt.evaluate written the PML way: same numbers under PML's names."""
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from sklearn.datasets import load_digits

    from rankopt.metrics import evaluate

    torch.manual_seed(0)
    digits = load_digits()
    data = torch.tensor(digits.data, dtype=torch.float32) / 16
    labels = torch.tensor(digits.target)
    train_x, train_y, test_x, test_y = data[:1200], labels[:1200], data[1200:], labels[1200:]
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 32))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_func = ROADMAP()  # was: losses.SmoothAPLoss() / losses.TripletMarginLoss()

    def embed(x):
        with torch.no_grad():
            return model(x)

    before = evaluate(embed(test_x), test_y, metrics="map@r")["map@r"]
    for _epoch in range(3):
        order = torch.randperm(len(train_x))
        for i in range(0, len(order) - 63, 64):
            idx = order[i : i + 64]
            optimizer.zero_grad()
            embeddings = model(train_x[idx])  # raw, not normalised: the loss does it
            loss = loss_func(embeddings, train_y[idx])
            loss.backward()
            optimizer.step()
    emb = embed(test_x)
    pml = AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r", "r_precision"), device=torch.device("cpu")
    ).get_accuracy(emb, test_y, emb, test_y, ref_includes_query=True)
    ours = evaluate(
        emb,
        test_y,
        emb,
        test_y,
        ref_includes_query=True,
        similarity="euclidean",
        metrics=["precision_at_1", "mean_average_precision_at_r", "r_precision"],
    )
    for name in pml:
        assert ours[name] == pytest.approx(pml[name], abs=1e-6), name
    assert ours["mean_average_precision_at_r"] > before + 0.1  # it trained, on raw embeddings
