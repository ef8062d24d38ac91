"""Feature sets: file format, validation messages, the linear probe, streaming in row blocks."""

import numpy as np
import pytest
import torch

from rankopt.ood import Features, create_detector, fit_linear_probe, load_features, save_features
from rankopt.ood import features as features_module


def test_save_load_roundtrip(tmp_path, toy):
    train, _, _ = toy
    save_features(train, tmp_path / "f.npz")
    back = load_features(tmp_path / "f.npz")
    assert np.array_equal(back.features, train.features) and np.array_equal(back.labels, train.labels)
    assert torch.equal(back.head.weight, train.head.weight) and torch.equal(back.head.bias, train.head.bias)


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"embeddings": np.ones((3, 2))}, "has no array 'features'"),
        ({"features": np.ones((3, 2)), "extra": np.ones(3)}, "unknown array"),
        ({"features": np.array([[1.0, np.nan], [0, 1]])}, r"NaN or infinite values \(first in row 0\)"),
        ({"features": np.ones((3, 2)), "labels": np.ones(2, int)}, "labels must be"),
        ({"features": np.ones((3, 2)), "logits": np.ones((4, 2))}, "logits has 4 rows but features has 3"),
        ({"features": np.ones((3, 2)), "labels": np.ones(3)}, "labels must be integers"),
        ({"features": np.ones((0, 2))}, "empty"),
        ({"features": np.ones((3, 2)), "head_weight": np.ones((2, 2))}, "head_weight and head_bias go together"),
        (
            {"features": np.ones((3, 2)), "head_weight": np.ones((2, 3)), "head_bias": np.ones(2)},
            r"head_weight must be \(C, 2\)",
        ),
    ],
)
def test_bad_files_name_the_problem(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=message):
        load_features(tmp_path / "bad.npz")


def test_not_an_npz(tmp_path):
    (tmp_path / "x.npz").write_text("hello")
    with pytest.raises(ValueError, match="not a readable .npz"):
        load_features(tmp_path / "x.npz")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_features(tmp_path / "missing.npz")


def test_linear_probe_separates_separable_classes():
    rng = np.random.default_rng(0)
    y = np.arange(600) % 3
    x = rng.normal(size=(600, 5)) + 4 * np.eye(3, 5)[y] + 10  # an offset: the probe must fold standardisation back
    head = fit_linear_probe(Features(x, labels=y))
    pred = head(torch.as_tensor(x)).argmax(1).numpy()
    assert (pred == y).mean() > 0.97


def test_block_streaming_gives_the_same_fit_and_scores(monkeypatch, toy, tmp_path):
    train, test, _ = toy
    memmap = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float64, shape=train.features.shape)
    memmap[:] = train.features
    names = ["mahalanobis", "rmd", "gmm", "gmm_std", "knn", "vim", "react", "energy"]
    whole = {n: create_detector(n).fit(train).score(test) for n in names}
    monkeypatch.setattr(features_module, "BLOCK_ROWS", 37)  # many small blocks, a ragged last one
    streamed_train = Features(
        np.load(tmp_path / "x.npy", mmap_mode="r"), train.std_features, labels=train.labels, head=train.head
    )
    for n in names:
        got = create_detector(n).fit(streamed_train).score(test)
        assert np.allclose(got, whole[n], rtol=1e-9, atol=1e-9), n


def test_images_are_adapted_to_the_backbone_input():
    from rankopt.ood.extract import Extractor

    grey = torch.rand(4, 1, 28, 28)
    rgb = Extractor(torch.nn.Identity(), channels=3, size=64, imagenet_norm=True, source="x")
    out = rgb.prepare(grey)
    assert out.shape == (4, 3, 64, 64)
    assert torch.allclose(out[:, 0].mean(), (grey.mean() - 0.485) / 0.229, atol=0.02)  # ImageNet-normalised red
    own = torch.rand(4, 3, 64, 64)  # a dataset's own transforms already made it: kept as it is
    assert rgb.prepare(own) is own
    assert Extractor(torch.nn.Identity(), 1, None, False, "x").prepare(grey) is grey  # Fashion-MNIST runs
    avg, std = Extractor(torch.nn.Identity(), 1, None, False, "x")(grey)
    assert torch.allclose(avg[:, 0], grey.mean(dim=(1, 2, 3))) and torch.allclose(
        std[:, 0], grey.flatten(1).std(1, correction=0)
    )


def test_probe_on_a_sample_beyond_max_rows():
    rng = np.random.default_rng(0)
    y = np.arange(900) % 3
    x = rng.normal(size=(900, 4)) + 5 * np.eye(3, 4)[y]
    head = fit_linear_probe(Features(x, labels=y), max_rows=300)
    assert (head(torch.as_tensor(x)).argmax(1).numpy() == y).mean() > 0.97
