"""Fashion-MNIST, the embedded default: IDX files, with a 2-level hierarchy.

Read from ``data_dir`` when one is given (only there), else from /usr/share/datasets/fashion-mnist
(Debian package ``dataset-fashion-mnist``); never downloaded. Files: {train,t10k}-images-idx3-ubyte and
{train,t10k}-labels-idx1-ubyte,
optionally gzipped.

Hierarchy (column 1): upper body {T-shirt/top, Pullover, Coat, Shirt}, lower body and one-piece
{Trouser, Dress}, footwear {Sandal, Sneaker, Ankle boot}, bags {Bag}.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from rankopt.data.base import DatasetNotFoundError, GreyImages

__all__ = ["FashionMNIST", "read_idx", "CLASSES", "SUPER_CLASSES", "SYSTEM_DIR"]

SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
SUPER_CLASSES = ["upper body", "lower body / one-piece", "footwear", "bags"]
_PARENT = np.array([0, 1, 0, 1, 0, 2, 0, 2, 3, 2], dtype=np.int64)
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (raw or .gz): magic 0x0000 <dtype> <ndim>, big-endian dims, then the data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {data[:4].hex() if data else 'empty'})")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise ValueError(f"{path}: truncated IDX header")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(_DTYPES[data[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    body = data[4 + 4 * ndim :]
    if len(body) != expected:
        raise ValueError(f"{path}: IDX body has {len(body)} bytes, expected {expected} for shape {dims}")
    return np.frombuffer(body, dtype=dtype).reshape(dims)


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def locate(split: str, data_dir: str | Path | None) -> tuple[Path, Path] | None:
    """The IDX files of a split: in data_dir when one is given (only there: a folder that does not hold
    them is an error, never a fallback to another copy), else in the Debian package's folder."""
    for directory in [Path(data_dir)] if data_dir else [SYSTEM_DIR]:
        images, labels = (_find(directory, s) for s in _FILES[split])
        if images and labels:
            return images, labels
    return None


class FashionMNIST(GreyImages):
    """Fashion-MNIST as (image (1, 28, 28) float in [0, 1] or transformed, labels (2,) int64, index).
    ``classes``: keep only these class ids (labels keep their ids); ``limit``: the first items."""

    def __init__(
        self,
        split: str = "train",
        data_dir: str | Path | None = None,
        transform: Callable | None = None,
        limit: int | None = None,
        classes: list[int] | None = None,
    ) -> None:
        if split not in _FILES:
            raise ValueError(f"split={split!r} is not 'train' or 'test'")
        found = locate(split, data_dir)
        if found is None:
            where = data_dir if data_dir else SYSTEM_DIR
            raise DatasetNotFoundError(
                f"Fashion-MNIST {split}: expected {' and '.join(_FILES[split])} (optionally .gz) in {where}. "
                "Install the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist) "
                "or put the IDX files from https://github.com/zalandoresearch/fashion-mnist in --data-dir"
            )
        images, labels = read_idx(found[0]), read_idx(found[1])
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"Fashion-MNIST files {found[0]} and {found[1]} do not match: {images.shape} vs {labels.shape}"
            )
        if int(labels.max()) >= len(CLASSES):
            raise ValueError(f"{found[1]}: label {int(labels.max())} outside the 10 Fashion-MNIST classes")
        if classes is not None:  # a class subset: e.g. near-OOD by class split (the other classes held out)
            wanted = np.asarray(classes)
            if (
                wanted.ndim != 1
                or len(wanted) == 0
                or not np.issubdtype(wanted.dtype, np.integer)
                or wanted.min() < 0
                or wanted.max() >= len(CLASSES)
            ):
                raise ValueError(
                    f"classes={list(classes)!r}: expected a non-empty list of Fashion-MNIST class ids 0..9"
                )
            keep = np.isin(labels, wanted)
            images, labels = images[keep], labels[keep]
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        self.images = torch.from_numpy(np.array(images, dtype=np.uint8))
        fine = labels.astype(np.int64)
        self.labels = torch.from_numpy(np.stack([fine, _PARENT[fine]], axis=1))
        self.transform = transform
        self.source = found[0].parent

    @property
    def n_levels(self) -> int:
        return 2
