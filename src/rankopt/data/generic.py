"""Users' own data: an image-folder tree, or a CSV of `path,label[,label_level1,...][,split]`.

Splits: an image folder whose top-level folders are split names (``train``, ``valid``, ``test``,
``query``, ``gallery``) holds one tree per split; a CSV may carry a ``split`` column. Either way the
labels are mapped over every split at once. Without splits, ``split=None`` returns every image and
the run layer carves a seeded, class-disjoint split whose files it lists in the run folder.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

from rankopt.data.base import DatasetNotFoundError, ImageList, contiguous_labels

__all__ = ["image_folder", "csv_images", "available_splits", "SPLIT_NAMES"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
SPLIT_NAMES = ("train", "valid", "test", "query", "gallery")


def _folder_splits(root: Path) -> list[str]:
    return [s for s in SPLIT_NAMES if (root / s).is_dir()]


def _folder_tree(root: Path) -> tuple[list[Path], list[list[str]]]:
    """Image files below root and their label columns (finest first), one folder level per column."""
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
    return files, cols


def image_folder(root, split: str | None = None, transform: Callable | None = None, **kw) -> ImageList:
    """root/<class>/<image>, or root/<coarse>/<fine>/<image> for two levels (any depth: each folder level
    below root is a label column, the deepest the finest); with split folders, root/<split>/<class>/..."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(f"image folder {root} does not exist; expected root/<class>/<image files>")
    splits = _folder_splits(root)
    if not splits:
        if split is not None:
            raise ValueError(
                f"image folder {root} has no split folders ({', '.join(SPLIT_NAMES)}); split={split!r} needs one"
            )
        files, cols = _folder_tree(root)
        return ImageList(files, contiguous_labels(cols), transform, name=f"image folder {root}", **kw)
    if split is None or split not in splits:
        raise ValueError(f"image folder {root}: split {split!r} is not one of its split folders ({', '.join(splits)})")
    trees = {s: _folder_tree(root / s) for s in splits}
    files, cols = trees[split]
    depths = {len(c) for _, c in trees.values()}
    if len(depths) != 1:
        raise ValueError(f"image folder {root}: the split folders have different depths of class folders")
    space = [sum((c[j] for _, c in trees.values()), []) for j in range(depths.pop())]
    return ImageList(files, contiguous_labels(cols, space), transform, name=f"image folder {root / split}", **kw)


def _read_csv(path: Path) -> tuple[list[str], list[list[int]], list[str] | None]:
    """(paths, labels, splits or None) of a `path,label[,...][,split]` CSV, errors with file:line."""
    paths, labels, splits = [], [], []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, None) or []]
        if not header or header[0] != "path" or len(header) < 2:
            raise ValueError(f"{path}:1: expected a header 'path,label[,label_level1,...][,split]', got {header!r}")
        split_col = header.index("split") if "split" in header else None
        label_cols = [j for j in range(1, len(header)) if j != split_col]
        if not label_cols:
            raise ValueError(f"{path}:1: no label column in the header {header!r}")
        for i, row in enumerate(reader, start=2):
            if not row or not "".join(row).strip():
                continue
            if len(row) != len(header):
                raise ValueError(f"{path}:{i}: expected {len(header)} fields, got {len(row)}: {row!r}")
            try:
                values = [int(row[j]) for j in label_cols]
            except ValueError:
                raise ValueError(f"{path}:{i}: labels must be integers, got {[row[j] for j in label_cols]!r}") from None
            if min(values) < 0:
                raise ValueError(f"{path}:{i}: labels must be non-negative, got {values}")
            paths.append(row[0].strip())
            labels.append(values)
            if split_col is not None:
                splits.append(row[split_col].strip())
    if not paths:
        raise ValueError(f"{path}: no rows")
    return paths, labels, splits if split_col is not None else None


def csv_images(path, split: str | None = None, root=None, transform: Callable | None = None, **kw) -> ImageList:
    """A CSV with a header `path,label[,label_level1,...][,split]`: image path (relative to ``root``, default
    the CSV's folder) and integer labels, finest first; rows of ``split`` when the CSV has a split column."""
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"CSV {path} does not exist; expected a header path,label[,label_level1,...]")
    base = Path(root) if root is not None else path.parent
    paths, labels, splits = _read_csv(path)
    if splits is None:
        if split is not None:
            raise ValueError(f"CSV {path} has no 'split' column; split={split!r} needs one")
        keep = range(len(paths))
    else:
        if split not in set(splits):
            raise ValueError(
                f"CSV {path}: split {split!r} is not one of its split values ({', '.join(sorted(set(splits)))})"
            )
        keep = [i for i, s in enumerate(splits) if s == split]
    cols = [[labels[i][j] for i in keep] for j in range(len(labels[0]))]
    space = list(zip(*labels))
    name = f"CSV {path}" + (f" {split}" if split else "")
    return ImageList([base / paths[i] for i in keep], contiguous_labels(cols, space), transform, name=name, **kw)


def available_splits(name: str, root) -> list[str] | None:
    """The split names an image folder or CSV holds, or None when it holds none (the run layer carves)."""
    root = Path(root)
    if name == "image-folder":
        return _folder_splits(root) or None if root.is_dir() else None
    if name == "csv" and root.is_file():
        splits = _read_csv(root)[2]
        return sorted(set(splits)) if splits is not None else None
    return None
