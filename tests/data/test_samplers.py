"""Sampler invariants: m per class, super-class pairs, determinism, disjoint processes."""

import numpy as np
import pytest

from rankopt.data import HierarchicalSampler, MPerClassSampler


def labels(n_classes=20, per_class=5, n_super=4, seed=0):
    rng = np.random.default_rng(seed)
    fine = np.repeat(np.arange(n_classes), per_class)
    fine[:3] = 0  # class 0 gets more, class 1 only 2 images (< m)
    fine[3:8] = 1
    fine[3:6] = 2
    sup = fine % n_super
    return np.stack([fine, sup], 1)[rng.permutation(len(fine))]


def test_m_per_class_and_determinism():
    y = labels()
    s = MPerClassSampler(y, batch_size=16, m=4, seed=3)
    batches = list(s)
    assert len(batches) == len(y) // 16
    for b in batches:
        fine = y[b, 0]
        _, counts = np.unique(fine, return_counts=True)
        assert len(b) == 16 and (counts == 4).all()
    assert batches == list(MPerClassSampler(y, batch_size=16, m=4, seed=3))
    s.set_epoch(1)
    assert list(s) != batches


def test_hierarchical_two_super_classes_per_batch():
    y = labels()
    s = HierarchicalSampler(y, batch_size=16, m=4, super_classes_per_batch=2)
    for b in s:
        assert len(np.unique(y[b, 1])) <= 2
        _, counts = np.unique(y[b, 0], return_counts=True)
        assert (counts % 4 == 0).all()


@pytest.mark.parametrize("cls", [MPerClassSampler, HierarchicalSampler])
def test_processes_split_every_global_batch(cls):
    y = labels(n_classes=40)
    whole = list(cls(y, batch_size=32, m=4, seed=1))
    parts = [list(cls(y, batch_size=32, m=4, seed=1, num_replicas=2, rank=r)) for r in range(2)]
    for g, a, b in zip(whole, *parts):
        assert len(a) == len(b) == 16
        assert sorted(a + b) == sorted(g)  # together the global batch
        assert not set(y[a, 0]) & set(y[b, 0])  # a class lives on one process


def test_bad_configurations():
    y = labels()
    with pytest.raises(ValueError, match="multiple of m"):
        MPerClassSampler(y, batch_size=10, m=4)
    with pytest.raises(ValueError, match="split evenly over 3 processes"):
        MPerClassSampler(y, batch_size=16, m=4, num_replicas=3)
    with pytest.raises(ValueError, match="needs 100 classes"):
        MPerClassSampler(y, batch_size=400, m=4)


def test_a_class_of_exactly_m_images_gives_each_once():
    """Replacement only for classes smaller than m: a class of exactly m images never repeats one."""
    y = np.repeat(np.arange(12), 4)[:, None]
    for seed in range(5):
        for b in MPerClassSampler(y, batch_size=16, m=4, seed=seed):
            assert len(set(b)) == len(b)
