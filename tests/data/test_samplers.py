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


def test_shuffle_batches_are_a_fresh_permutation_every_epoch():
    from rankopt.data.samplers import ShuffleBatchSampler

    full = ShuffleBatchSampler(10, 4, seed=3)
    assert len(full) == 2 and all(len(b) == 4 for b in full)  # the last 2 items dropped
    kept = ShuffleBatchSampler(10, 4, seed=3, drop_last=False)
    epochs = []
    for epoch in range(3):
        kept.set_epoch(epoch)
        batches = list(kept)
        assert [len(b) for b in batches] == [4, 4, 2] and len(kept) == 3
        assert sorted(i for b in batches for i in b) == list(range(10))  # every item once
        epochs.append([i for b in batches for i in b])
    assert epochs[0] != epochs[1] != epochs[2]
    kept.set_epoch(1)
    assert [i for b in kept for i in b] == epochs[1]  # (seed, epoch) decides the order: a resume redraws it
    few = ShuffleBatchSampler(3, 32, drop_last=False)  # fewer items than one batch: one short batch
    assert [sorted(b) for b in few] == [[0, 1, 2]]
    with pytest.raises(ValueError, match="fewer than one batch"):
        ShuffleBatchSampler(3, 32)
    with pytest.raises(ValueError, match="cannot be shared"):
        ShuffleBatchSampler(10, 4, num_replicas=2, drop_last=False)
