"""Batch samplers for rank losses: m images per class, and pairs of super-classes per batch.

Both are deterministic given (seed, epoch) and aware of distributed training: a *global* batch of
``batch_size`` is drawn identically on every process, and process ``rank`` of ``num_replicas`` takes
every num_replicas-th class group of it, so each process still holds m images of each of its classes
and no index is shared between processes within a batch. Classes smaller than m are drawn with
replacement, as pytorch-metric-learning's MPerClassSampler (used by ROADMAP / HAPPIER) does.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = ["MPerClassSampler", "HierarchicalSampler", "ShuffleBatchSampler"]


def _as_labels(labels) -> np.ndarray:
    arr = labels.numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or len(arr) == 0:
        raise ValueError(f"labels must be (N,) or (N, L) and non-empty; got shape {arr.shape}")
    return arr.astype(np.int64)


class _Base(Sampler[list[int]]):
    def __init__(self, labels, batch_size: int, m: int, seed: int, num_replicas: int, rank: int) -> None:
        self.labels = _as_labels(labels)
        if m < 1 or batch_size < m or batch_size % m:
            raise ValueError(f"batch_size={batch_size} must be a positive multiple of m={m}")
        groups = batch_size // m
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"rank={rank} is not in 0..num_replicas-1={num_replicas - 1}")
        if groups % num_replicas:
            raise ValueError(
                f"the {groups} classes of a global batch (batch_size/m) must split evenly over {num_replicas} processes"
            )
        self.batch_size, self.m, self.seed = batch_size, m, seed
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0
        fine = self.labels[:, 0]
        classes, inverse = np.unique(fine, return_inverse=True)
        self.by_class = [np.flatnonzero(inverse == c) for c in range(len(classes))]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return max(1, len(self.labels) // self.batch_size)

    def _rng(self) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch])

    def _take(self, rng: np.random.Generator, cls: int) -> list[int]:
        pool = self.by_class[cls]
        replace = len(pool) < self.m
        return rng.choice(pool, size=self.m, replace=replace).tolist()

    def _local(self, groups: list[list[int]]) -> list[int]:
        return [i for g in groups[self.rank :: self.num_replicas] for i in g]


class MPerClassSampler(_Base):
    """Batches of batch_size // m classes with m images each (classes drawn without replacement within a batch)."""

    def __init__(
        self, labels, batch_size: int, m: int = 4, seed: int = 0, num_replicas: int = 1, rank: int = 0
    ) -> None:
        super().__init__(labels, batch_size, m, seed, num_replicas, rank)
        if batch_size // m > len(self.by_class):
            raise ValueError(f"a batch needs {batch_size // m} classes but the dataset has {len(self.by_class)}")

    def __iter__(self) -> Iterator[list[int]]:
        rng = self._rng()
        n_groups = self.batch_size // self.m
        for _ in range(len(self)):
            classes = rng.choice(len(self.by_class), size=n_groups, replace=False)
            yield self._local([self._take(rng, int(c)) for c in classes])


class HierarchicalSampler(_Base):
    """Each batch draws ``super_classes_per_batch`` super-classes (label column ``super_level``) and fills
    an equal share of the batch from classes of each, m images per class (FastAP / ROADMAP / HAPPIER on SOP)."""

    def __init__(
        self,
        labels,
        batch_size: int,
        m: int = 4,
        super_classes_per_batch: int = 2,
        super_level: int = 1,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        super().__init__(labels, batch_size, m, seed, num_replicas, rank)
        if not 0 < super_level < self.labels.shape[1]:
            raise ValueError(
                f"super_level={super_level} needs labels with more than {super_level} column(s); got "
                f"{self.labels.shape[1]}"
            )
        if (batch_size // m) % super_classes_per_batch:
            raise ValueError(
                f"batch_size // m = {batch_size // m} classes must split evenly over {super_classes_per_batch} "
                "super-classes"
            )
        fine_classes = np.unique(self.labels[:, 0])
        first = {int(c): int(np.flatnonzero(self.labels[:, 0] == c)[0]) for c in fine_classes}
        parents = np.array([self.labels[first[int(c)], super_level] for c in fine_classes])
        self.supers = [np.flatnonzero(parents == s) for s in np.unique(parents)]
        if len(self.supers) < super_classes_per_batch:
            raise ValueError(
                f"{super_classes_per_batch} super-classes per batch but the dataset has {len(self.supers)}"
            )
        self.per_super = super_classes_per_batch

    def __iter__(self) -> Iterator[list[int]]:
        rng = self._rng()
        share = self.batch_size // self.m // self.per_super
        for _ in range(len(self)):
            groups = []
            for s in rng.choice(len(self.supers), size=self.per_super, replace=False):
                members = self.supers[int(s)]
                classes = rng.choice(members, size=share, replace=len(members) < share)
                groups += [self._take(rng, int(c)) for c in classes]
            yield self._local(groups)


class ShuffleBatchSampler(Sampler[list[int]]):
    """Batches of a fresh permutation of ``n`` items every epoch (seeded by (seed, epoch)), the last
    incomplete batch dropped (``drop_last=False``, one process: kept — a few shots may not fill one
    batch); under DDP each of ``num_replicas`` processes takes its share of every global batch of
    ``batch_size`` (self-supervised pre-training: no labels to group by)."""

    def __init__(
        self, n: int, batch_size: int, seed: int = 0, num_replicas: int = 1, rank: int = 0, drop_last: bool = True
    ) -> None:
        if batch_size % num_replicas:
            raise ValueError(f"batch_size={batch_size} must split evenly over {num_replicas} processes")
        if not drop_last and num_replicas > 1:
            raise ValueError("an incomplete last batch cannot be shared by several processes: drop_last=True")
        if n < batch_size and drop_last:
            raise ValueError(f"{n} items are fewer than one batch of {batch_size}")
        self.n, self.batch_size, self.seed, self.num_replicas, self.rank = n, batch_size, seed, num_replicas, rank
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        if not self.drop_last:
            for start in range(0, self.n, self.batch_size):
                yield order[start : start + self.batch_size].tolist()
            return
        share = self.batch_size // self.num_replicas
        for b in range(len(self)):
            start = b * self.batch_size + self.rank * share
            yield order[start : start + share].tolist()
