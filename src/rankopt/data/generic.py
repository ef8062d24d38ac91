"""Users' own data: an image-folder tree, or a CSV of `path,label[,label_level1,...]`."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable

from rankopt.data.base import DatasetNotFoundError, ImageList, contiguous_labels

__all__ = ["image_folder", "csv_images"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def image_folder(root, transform: Callable | None = None, **kw) -> ImageList:
    """root/<class>/<image>, or root/<coarse>/<fine>/<image> for two levels (any depth: each folder level
    below root is a label column, the deepest the finest)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(f"image folder {root} does not exist; expected root/<class>/<image files>")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetNotFoundError(f"image folder {root} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    depths = {len(p.relative_to(root).parts) for p in files}
    if len(depths) != 1 or depths == {1}:
        raise ValueError(
            f"image folder {root}: every image must sit at the same depth below the root, at least one folder deep "
            f"(root/<class>/<image>); found depths {sorted(depths)}"
        )
    depth = depths.pop() - 1
    # column 0 the finest: the folder holding the image; each coarser column qualified by its parents
    cols = [["/".join(p.relative_to(root).parts[: depth - c]) for p in files] for c in range(depth)]
    return ImageList(files, contiguous_labels(cols), transform, name=f"image folder {root}", **kw)


def csv_images(path, root=None, transform: Callable | None = None, **kw) -> ImageList:
    """A CSV with a header `path,label[,label_level1,...]`: image path (relative to ``root``, default the
    CSV's folder) and integer labels, finest first."""
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"CSV {path} does not exist; expected a header path,label[,label_level1,...]")
    base = Path(root) if root is not None else path.parent
    paths, labels = [], []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header or header[0].strip() != "path" or len(header) < 2:
            raise ValueError(f"{path}:1: expected a header 'path,label[,label_level1,...]', got {header!r}")
        n_cols = len(header) - 1
        for i, row in enumerate(reader, start=2):
            if not row or not "".join(row).strip():
                continue
            if len(row) != n_cols + 1:
                raise ValueError(f"{path}:{i}: expected {n_cols + 1} fields, got {len(row)}: {row!r}")
            try:
                values = [int(v) for v in row[1:]]
            except ValueError:
                raise ValueError(f"{path}:{i}: labels must be integers, got {row[1:]!r}") from None
            if min(values) < 0:
                raise ValueError(f"{path}:{i}: labels must be non-negative, got {values}")
            paths.append(base / row[0].strip())
            labels.append(values)
    if not paths:
        raise ValueError(f"{path}: no rows")
    return ImageList(paths, contiguous_labels(list(zip(*labels))), transform, name=f"CSV {path}", **kw)
