"""What every dataset shares: a list of image files with int64 labels (N, L), column 0 the finest."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["DatasetNotFoundError", "BadImageError", "ImageList", "Subset", "require_files", "contiguous_labels"]

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


def contiguous_labels(columns: Sequence[Sequence], space: Sequence[Sequence] | None = None) -> np.ndarray:
    """Map each column of raw labels (any hashable values) to ids 0..K-1 in sorted order: (N, L) int64.

    ``space``: for each column, every value the dataset uses in *any* of its splits (default: the
    column itself). Built once over all splits, the mapping gives a raw id the same label in every
    split, so a query and a gallery item of the same class always share a label.
    """
    out = []
    for c, col in enumerate(columns):
        values = np.asarray(col)
        known = np.unique(np.asarray(space[c] if space is not None else col))
        ids = np.searchsorted(known, values)
        outside = (ids >= len(known)) | (known[np.minimum(ids, len(known) - 1)] != values)
        if outside.any():
            raise ValueError(f"label {values[outside][0]!r} (column {c}) is not in the dataset's label space")
        out.append(ids.astype(np.int64))
    return np.stack(out, axis=1)


class GreyImages(Dataset):
    """28 × 28 grey images held in memory as uint8 (``images`` (N, 28, 28), ``labels`` (N, L)): items are
    (image (1, 28, 28) float in [0, 1], labels, index). Fashion-MNIST and the MNIST subset."""

    images: torch.Tensor
    labels: torch.Tensor
    transform: Callable | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        img = self.images[index].unsqueeze(0).float() / 255.0
        if self.transform is not None:
            img = self.transform(img)
        return img, self.labels[index], index


class Subset(Dataset):
    """Some items of a dataset, keeping ``labels`` (for samplers and evaluation) and, where the dataset
    has them, ``paths``. ``relabel=True`` maps each label column to 0..K-1 over the kept items: what a
    training set needs for class proxies, while evaluation sets keep the dataset-wide ids."""

    def __init__(self, dataset, indices: Sequence[int] | np.ndarray, relabel: bool = False) -> None:
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        labels = dataset.labels[torch.from_numpy(self.indices)]
        if relabel and len(labels):
            labels = torch.from_numpy(contiguous_labels(labels.T.numpy()))
        self.labels = labels
        self.name = getattr(dataset, "name", "dataset")

    @property
    def paths(self) -> list[Path] | None:
        paths = getattr(self.dataset, "paths", None)
        return None if paths is None else [paths[i] for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        item = self.dataset[int(self.indices[i])]
        return item[0], self.labels[i], i


def _open_rgb(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise BadImageError(f"cannot read image {path}: {err}") from None


class ImageList(Dataset):
    """Images on disk with hierarchical labels. Returns (image, labels (L,) int64, index).

    At construction every file is checked to exist and be non-empty (a stat each: cheap at millions),
    so a missing or zero-byte image stops the run before training, not mid-epoch. on_bad_image="error"
    raises BadImageError naming the first such file and how many there are (and, for a file that only
    fails to decode, when it is read); "skip" decodes-checks every file once, drops the unreadable ones
    and counts them in ``n_skipped``.
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
        else:
            self._check_present()

    def _check_present(self) -> None:
        bad = []
        for p in self.paths:
            try:
                if p.stat().st_size == 0:
                    bad.append(p)
            except OSError:
                bad.append(p)
        if bad:
            raise BadImageError(
                f"{self.name}: {len(bad)} image file(s) missing or empty, the first {bad[0]}; "
                "fix them or drop them with --skip-bad-images (data.skip_bad_images=true)"
            )

    def _drop_unreadable(self) -> None:
        from PIL import Image

        keep = []
        for i, p in enumerate(self.paths):
            try:
                with Image.open(p) as img:
                    img.verify()
                keep.append(i)
            except Exception:
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
