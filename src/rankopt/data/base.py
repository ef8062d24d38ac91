"""What every dataset shares: a list of image files with int64 labels (N, L), column 0 the finest."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["DatasetNotFoundError", "BadImageError", "ImageList", "require_files", "contiguous_labels"]

log = logging.getLogger(__name__)


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing: the message says which files were expected where and where they come from."""


class BadImageError(OSError):
    """An image file that cannot be read; the message names it."""


def require_files(root: str | Path, names: Sequence[str], dataset: str, source: str) -> Path:
    """Check that root holds every relative path in names; raise DatasetNotFoundError listing the missing ones."""
    root = Path(root)
    missing = [n for n in names if not (root / n).exists()]
    if missing:
        raise DatasetNotFoundError(
            f"{dataset}: expected {', '.join(missing)} under {root} (missing). Get the dataset from {source} "
            f"and pass its folder as the data root."
        )
    return root


def contiguous_labels(columns: Sequence[Sequence]) -> np.ndarray:
    """Map each column of raw labels (any hashable values) to 0..K-1, in sorted order: (N, L) int64."""
    out = []
    for col in columns:
        values = np.asarray(col)
        _, inverse = np.unique(values, return_inverse=True)
        out.append(inverse.astype(np.int64))
    return np.stack(out, axis=1)


def _open_rgb(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise BadImageError(f"cannot read image {path}: {err}") from None


class ImageList(Dataset):
    """Images on disk with hierarchical labels. Returns (image, labels (L,) int64, index).

    on_bad_image="error" raises BadImageError naming the file when it is read; "skip" checks every
    file once at construction, drops the unreadable ones and counts them in ``n_skipped``.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        labels: np.ndarray,
        transform: Callable | None = None,
        *,
        name: str = "dataset",
        on_bad_image: str = "error",
    ) -> None:
        labels = np.asarray(labels, dtype=np.int64)
        if labels.ndim == 1:
            labels = labels[:, None]
        if len(paths) != len(labels):
            raise ValueError(f"{name}: {len(paths)} images but {len(labels)} label rows")
        if len(paths) == 0:
            raise ValueError(f"{name}: no images")
        if on_bad_image not in ("error", "skip"):
            raise ValueError(f"on_bad_image must be 'error' or 'skip'; got {on_bad_image!r}")
        self.paths = [Path(p) for p in paths]
        self.labels = torch.from_numpy(labels)
        self.transform = transform
        self.name = name
        self.n_skipped = 0
        if on_bad_image == "skip":
            self._drop_unreadable()

    def _drop_unreadable(self) -> None:
        from PIL import Image

        keep = []
        for i, p in enumerate(self.paths):
            try:
                with Image.open(p) as img:
                    img.verify()
                keep.append(i)
            except Exception:  # noqa: BLE001 - any failure to read means "bad image"
                log.warning("%s: skipping unreadable image %s", self.name, p)
        self.n_skipped = len(self.paths) - len(keep)
        self.paths = [self.paths[i] for i in keep]
        self.labels = self.labels[keep]
        if not self.paths:
            raise ValueError(f"{self.name}: every image is unreadable")

    @property
    def n_levels(self) -> int:
        return self.labels.shape[1]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        img = _open_rgb(self.paths[index])
        if self.transform is not None:
            img = self.transform(img)
        return img, self.labels[index], index
