import numpy as np
import pytest

from miniatures import write_fashion
from rankopt.ood import Features, fit_linear_probe


def clusters(n, rng, classes=4, dim=12, std_dim=6, shift=0.0, scale=1.0):
    """Non-negative features in `classes` clusters (avg) with std features, labels 0..classes-1."""
    centres = np.abs(np.random.default_rng(123).normal(size=(classes, dim))) * 2
    y = np.arange(n) % classes
    x = np.abs(centres[y] + scale * rng.normal(size=(n, dim)) + shift)
    s = np.abs(0.5 + 0.1 * y[:, None] + 0.2 * rng.normal(size=(n, std_dim)) + shift / 4)
    return x, s, y


@pytest.fixture(scope="module")
def toy():
    """ID train / ID test / OOD features of 4 classes, with a linear probe head."""
    rng = np.random.default_rng(0)
    x, s, y = clusters(800, rng)
    train = Features(x, s, labels=y)
    train.head = fit_linear_probe(train)
    xt, st, _ = clusters(300, rng)
    xo, so, _ = clusters(200, rng, shift=1.5, scale=2.0)
    return train, Features(xt, st, head=train.head), Features(xo, so, head=train.head)


@pytest.fixture()
def tiny_fashion(tmp_path):
    (tmp_path / "fashion").mkdir()
    return write_fashion(tmp_path / "fashion", 320, 120)
