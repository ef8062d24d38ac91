"""Bad input: one clear error naming the problem."""

import numpy as np
import pytest
import torch

from rankopt.metrics import evaluate, parse_metric


def good(n=10):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 4, generator=g), torch.arange(n) % 3


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda x, y: (x.index_fill(0, torch.tensor([2]), float("nan")), y), "NaN values in 1 row.*row 2"),
        (lambda x, y: (x.index_fill(0, torch.tensor([4]), float("inf")), y), "inf values"),
        (lambda x, y: (x[:, :0], y), "empty"),
        (lambda x, y: (x[:0], y[:0]), "empty"),
        (lambda x, y: (x, y[:-1]), "labels has 9 rows but embeddings has 10"),
        (lambda x, y: (x, y.float()), "must be integers"),
        (lambda x, y: (x, y - 5), "non-negative"),
        (lambda x, y: (x[0], y), r"2-D array"),
        (lambda x, y: (x.index_fill(0, torch.tensor([1]), 0.0), y), "row 1 is all zeros"),
    ],
)
def test_bad_embeddings_and_labels(mutate, match):
    x, y = mutate(*good())
    with pytest.raises(ValueError, match=match):
        evaluate(x, y, metrics=["ap"])


def test_k_larger_than_gallery_reads_the_whole_list_and_warns_once():
    x, y = good()
    with pytest.warns(UserWarning, match="hit@10, p@10: k beyond the 9 items each query ranks"):
        beyond = evaluate(x, y, metrics=["hit@10", "p@10"])
    whole = evaluate(x, y, metrics=["hit@9", "p@9"])
    assert beyond["hit@10"] == whole["hit@9"] and beyond["p@10"] == pytest.approx(whole["p@9"] * 9 / 10)


@pytest.mark.parametrize(
    "name,match",
    [
        ("apx", "did you mean ap"),
        ("hit@0", "positive integer"),
        ("hit", "unknown"),
        ("ndcg/level1", "binary metrics only"),
        ("rcall@5", "did you mean recall@10"),
    ],
)
def test_bad_metric_names(name, match):
    with pytest.raises(ValueError, match=match):
        parse_metric(name)


def test_level_above_label_columns():
    x, y = good()
    with pytest.raises(ValueError, match="level 2 but the labels have 1 column"):
        evaluate(x, y, metrics=["ap/level2"])


def test_bad_options_and_gallery_mismatch():
    x, y = good()
    with pytest.raises(ValueError, match="ties='random'"):
        evaluate(x, y, ties="random")
    with pytest.raises(ValueError, match="no_positive"):
        evaluate(x, y, no_positive="skip")
    with pytest.raises(ValueError, match="gallery has dimension 5"):
        evaluate(x, y, torch.randn(3, 5), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="without gallery_labels"):
        evaluate(x, y, torch.randn(3, 4))
    with pytest.raises(ValueError, match="label columns"):
        evaluate(x, y, torch.randn(3, 4), torch.zeros(3, 2, dtype=torch.int64))


def test_labels_stay_int64_beyond_float32_precision():
    # PML casts labels to float32, where 2**24 and 2**24 + 1 collide; rankopt keeps them apart
    x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    y = np.array([2**24, 2**24 + 1, 2**24, 2**24 + 1], dtype=np.int64)
    out = evaluate(x, y, metrics=["hit@1"])
    assert out["hit@1"] == 0.0
