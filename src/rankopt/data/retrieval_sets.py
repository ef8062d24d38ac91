"""The image-retrieval benchmarks, each read from its real on-disk format (reference/rank-losses.md §F).

None of them can be downloaded by rankopt: each loader checks its files and, when they are missing,
says which files it expected where and where they come from. Labels are (N, L) int64, column 0 the
finest level, mapped to 0..K-1 per column *over every split of the dataset* (one label space), so
the same original id is the same label in train, query and gallery.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rankopt.data.base import ImageList, contiguous_labels, require_files

__all__ = ["sop", "cub200", "inaturalist", "inshop", "dyml", "cars196", "gldv2"]

_SPLITS = ("train", "test")


def _split(split: str, allowed=_SPLITS) -> str:
    if split not in allowed:
        raise ValueError(f"split={split!r} is not one of {allowed}")
    return split


def _read_rows(path: Path, delimiter: str | None = None, skip: int = 0) -> list[list[str]]:
    """Non-empty rows of a text table; a malformed file is reported with its line number by callers."""
    rows = []
    with open(path, newline="") as f:
        for _ in range(skip):
            next(f, None)
        for line in f:
            line = line.strip()
            if line:
                rows.append(line.split(delimiter) if delimiter else line.split())
    return rows


def _fields(path: Path, row: list[str], n: int, line: int) -> list[str]:
    if len(row) < n:
        raise ValueError(f"{path}:{line}: expected {n} fields, got {len(row)}: {' '.join(row)!r}")
    return row


def _ints(values: list[str]) -> np.ndarray:
    return np.asarray([int(v) for v in values], dtype=np.int64)


def sop(root, split: str = "train", transform: Callable | None = None, **kw) -> ImageList:
    """Stanford Online Products: Ebay_{train,test}.txt (`image_id class_id super_class_id path`), 2 levels
    [product, category]."""
    name = f"Ebay_{_split(split)}.txt"
    root = require_files(root, [name], "Stanford Online Products", "https://cvgl.stanford.edu/projects/lifted_struct/")
    rows = _read_rows(root / name)
    header, body = rows[0], rows[1:]
    if header[:3] != ["image_id", "class_id", "super_class_id"]:
        raise ValueError(
            f"{root / name}:1: expected the header 'image_id class_id super_class_id path', got {' '.join(header)!r}"
        )
    body = [_fields(root / name, r, 4, i + 2) for i, r in enumerate(body)]
    space = [[], []]
    for other in ("Ebay_train.txt", "Ebay_test.txt"):  # the label space: both split files where present
        rows_other = body if other == name else (_read_rows(root / other)[1:] if (root / other).is_file() else [])
        for r in rows_other:
            if len(r) >= 3:
                space[0].append(r[1])
                space[1].append(r[2])
    fine = [r[1] for r in body]
    coarse = [r[2] for r in body]
    labels = contiguous_labels([_ints(fine), _ints(coarse)], [_ints(space[0]), _ints(space[1])])
    return ImageList([root / r[3] for r in body], labels, transform, name="SOP", **kw)


def cub200(root, split: str = "train", transform: Callable | None = None, **kw) -> ImageList:
    """CUB-200-2011: images/<class folder>/*.jpg; classes sorted, first 100 train, last 100 test."""
    root = require_files(root, ["images"], "CUB-200-2011", "https://www.vision.caltech.edu/datasets/cub_200_2011/")
    classes = sorted(p.name for p in (root / "images").iterdir() if p.is_dir())
    if len(classes) < 2:
        raise ValueError(f"CUB-200-2011: {root / 'images'} holds {len(classes)} class folder(s)")
    half = len(classes) // 2
    chosen = classes[:half] if _split(split) == "train" else classes[half:]
    paths, labels = [], []
    for c in chosen:
        for f in sorted((root / "images" / c).iterdir()):
            if f.is_file():
                paths.append(f)
                labels.append(c)
    return ImageList(paths, contiguous_labels([labels], [classes]), transform, name="CUB-200-2011", **kw)


_INAT_RANKS = ["genus", "family", "order", "class", "phylum", "kingdom"]


def inaturalist(
    root, split: str = "train", hierarchy: str = "base", transform: Callable | None = None, **kw
) -> ImageList:
    """iNaturalist-2018 retrieval split (Smooth-AP): Inat_dataset_splits/Inaturalist_{train,test}_set1.txt
    (paths `train_val2018/<supercategory>/<category id>/<image>`) and train2018.json (taxonomy).
    hierarchy="base": [species, super-category]; "full": [species, genus, family, order, class, phylum, kingdom]."""
    if hierarchy not in ("base", "full"):
        raise ValueError(f"hierarchy={hierarchy!r} is not 'base' or 'full'")
    split_file = f"Inat_dataset_splits/Inaturalist_{_split(split)}_set1.txt"
    root = require_files(
        root,
        [split_file, "train2018.json"],
        "iNaturalist-2018",
        "https://github.com/visipedia/inat_comp (images, train2018.json) and the Smooth-AP split files",
    )
    with open(root / "train2018.json") as f:
        categories = {int(c["id"]): c for c in json.load(f)["categories"]}
    paths, cols = [], [[] for _ in range(7 if hierarchy == "full" else 2)]

    def columns(cat_id: int, cat: dict, supercategory: str) -> list:
        if hierarchy == "base":
            return [cat_id, cat.get("supercategory", supercategory)]
        # qualify each rank by its parent so that a reused name stays two labels (a proper tree)
        return [cat_id] + ["/".join(cat[r] for r in reversed(_INAT_RANKS[j - 1 :])) for j in range(1, 7)]

    for i, row in enumerate(_read_rows(root / split_file)):
        rel = row[0]
        parts = Path(rel).parts
        if len(parts) < 4:
            raise ValueError(
                f"{root / split_file}:{i + 1}: expected train_val2018/<supercategory>/<id>/<image>, got {rel!r}"
            )
        cat_id = int(parts[2])
        if cat_id not in categories:
            raise ValueError(f"{root / split_file}:{i + 1}: category {cat_id} is not in train2018.json")
        paths.append(root / rel)
        for j, value in enumerate(columns(cat_id, categories[cat_id], parts[1])):
            cols[j].append(value)
    # the label space: the whole taxonomy of train2018.json, shared by both split files
    space = list(zip(*(columns(cid, cat, "") for cid, cat in categories.items())))
    return ImageList(paths, contiguous_labels(cols, space), transform, name="iNaturalist-2018", **kw)


def inshop(root, split: str = "train", transform: Callable | None = None, **kw) -> ImageList:
    """In-Shop Clothes: list_eval_partition.txt (2 header lines; `image_name item_id evaluation_status`),
    split train / query / gallery; 3 levels [item, category, gender] from img/<GENDER>/<Category>/<id>/..."""
    _split(split, ("train", "query", "gallery"))
    root = require_files(
        root,
        ["list_eval_partition.txt"],
        "In-Shop",
        "https://mmlab.ie.cuhk.edu.hk/projects/DeepFashion/InShopRetrieval.html",
    )
    paths, rows, everything = [], [], []
    for i, row in enumerate(_read_rows(root / "list_eval_partition.txt", skip=2)):
        image, item, status = _fields(root / "list_eval_partition.txt", row, 3, i + 3)[:3]
        parts = Path(image).parts
        gender, cat = (parts[1], parts[2]) if len(parts) >= 4 else ("unknown", "unknown")
        labels = (item, f"{gender}/{cat}", gender)
        everything.append(labels)  # the label space: all three partitions
        if status == split:
            paths.append(root / image)
            rows.append(labels)
    labels = contiguous_labels(list(zip(*rows)) if rows else [[], [], []], list(zip(*everything)))
    return ImageList(paths, labels, transform, name=f"In-Shop {split}", **kw)


def _dyml_table(path: Path, n_labels: int) -> tuple[list[str], list[list[int]]]:
    """DyML's label csv: a header (names may carry leading spaces and odd suffixes), fname then ids."""
    with open(path, newline="") as f:
        reader = csv.reader(f, skipinitialspace=True)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: empty file")
        names, labels = [], []
        for i, row in enumerate(reader, start=2):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 1 + n_labels:
                raise ValueError(f"{path}:{i}: expected a file name and {n_labels} label(s), got {row!r}")
            try:
                labels.append([int(v) for v in row[1 : 1 + n_labels]])
            except ValueError:
                raise ValueError(f"{path}:{i}: labels must be integers, got {row[1 : 1 + n_labels]!r}") from None
            names.append(row[0].strip())
    return names, labels


def dyml(
    root, variant: str = "vehicle", split: str = "train", level: str = "fine", transform: Callable | None = None, **kw
) -> ImageList:
    """DyML-Vehicle / Animal / Product. train: train/label.csv (fname, fine, middle, coarse) + train/imgs/.
    test (vehicle, animal): bmk_{level}/{query,gallery}.csv + images, one label column, per-level sets
    (split "query" or "gallery", level fine|middle|coarse). product test: mini-bmk_all_in_one/label.csv
    (3 levels) + imgs/, split "test"."""
    if variant not in ("vehicle", "animal", "product"):
        raise ValueError(f"DyML variant={variant!r} is not vehicle, animal or product")
    name = variant
    source = "https://github.com/SupetZYK/DynamicMetricLearning"
    if split == "train":
        root = require_files(root, ["train/label.csv", "train/imgs"], f"DyML-{name}", source)
        files, labels = _dyml_table(root / "train/label.csv", 3)
        return ImageList(
            [root / "train/imgs" / f for f in files],
            contiguous_labels(list(zip(*labels))),
            transform,
            name=f"DyML-{name}",
            **kw,
        )
    if name == "product":
        _split(split, ("train", "test"))
        root = require_files(root, ["mini-bmk_all_in_one/label.csv"], "DyML-product", source)
        files, labels = _dyml_table(root / "mini-bmk_all_in_one/label.csv", 3)
        return ImageList(
            [root / "mini-bmk_all_in_one/imgs" / f for f in files],
            contiguous_labels(list(zip(*labels))),
            transform,
            name="DyML-product",
            **kw,
        )
    _split(split, ("train", "query", "gallery"))
    if level not in ("fine", "middle", "coarse"):
        raise ValueError(f"level={level!r} is not fine, middle or coarse")
    table = f"bmk_{level}/{split}.csv"
    root = require_files(root, [table], f"DyML-{name}", source)
    files, labels = _dyml_table(root / table, 1)
    # the label space: query and gallery of this level together, so a query's class is the gallery's
    space = [
        label[0]
        for part in ("query", "gallery")
        if (root / f"bmk_{level}/{part}.csv").is_file()
        for label in (labels if part == split else _dyml_table(root / f"bmk_{level}/{part}.csv", 1)[1])
    ]
    return ImageList(
        [root / f"bmk_{level}" / split / f for f in files],
        contiguous_labels(list(zip(*labels)), [space]),
        transform,
        name=f"DyML-{name} {level} {split}",
        **kw,
    )


def cars196(root, split: str = "train", transform: Callable | None = None, **kw) -> ImageList:
    """Cars196: cars_annos.mat (annotations with relative_im_path and class); classes 1..98 train, rest test."""
    root = require_files(root, ["cars_annos.mat"], "Cars196", "https://ai.stanford.edu/~jkrause/cars/car_dataset.html")
    try:
        from scipy.io import loadmat
    except ImportError:
        raise ImportError("Cars196 needs scipy to read cars_annos.mat: pip install scipy") from None
    annos = loadmat(root / "cars_annos.mat", squeeze_me=True)["annotations"]
    paths, classes, space = [], [], []
    for a in np.atleast_1d(annos):
        cls = int(a["class"])
        space.append(cls)
        if (cls <= 98) == (_split(split) == "train"):
            paths.append(root / str(a["relative_im_path"]))
            classes.append(cls)
    return ImageList(paths, contiguous_labels([classes], [space]), transform, name="Cars196", **kw)


def gldv2(root, split: str = "train", transform: Callable | None = None, **kw) -> ImageList:
    """Hierarchical Google Landmarks v2 (SupRank's H-GLDv2): train_clean.csv (`landmark_id,images`, images
    space-separated) with train_label_to_subcategory_with_clusters.csv (`landmark_id,cluster,overall_cluster`);
    split "index" reads index_image_to_landmark.csv with index_label_to_subcategory_with_clusters.csv.
    Images at images/<split>/a/b/c/<id>.jpg. Landmarks without a cluster are dropped. 3 levels."""
    _split(split, ("train", "index"))
    table = "train_clean.csv" if split == "train" else "index_image_to_landmark.csv"
    hier = f"{split}_label_to_subcategory_with_clusters.csv"
    root = require_files(
        root, [table, hier], "H-GLDv2", "https://github.com/cvdfoundation/google-landmark and the SupRank cluster files"
    )
    clusters = _gld_clusters(root / hier)
    space: dict = {}  # the label space: the landmarks of both cluster files where present
    for part in ("train", "index"):
        other = root / f"{part}_label_to_subcategory_with_clusters.csv"
        if other.is_file():
            space.update(clusters if part == split else _gld_clusters(other))
    paths, cols = [], [[], [], []]
    with open(root / table, newline="") as f:
        for i, row in enumerate(csv.DictReader(f), start=2):
            try:
                lid = int(row["landmark_id"])
                ids = (row["images"] if split == "train" else row["id"]).split()
            except (KeyError, ValueError, AttributeError):
                raise ValueError(f"{root / table}:{i}: malformed row {row!r}") from None
            if lid not in clusters:
                continue
            for image_id in ids:
                paths.append(root / "images" / split / image_id[0] / image_id[1] / image_id[2] / f"{image_id}.jpg")
                cols[0].append(lid)
                cols[1].append(clusters[lid][0])
                cols[2].append(clusters[lid][1])
    space_cols = [list(space), [c for c, _ in space.values()], [o for _, o in space.values()]]
    return ImageList(paths, contiguous_labels(cols, space_cols), transform, name=f"H-GLDv2 {split}", **kw)


def _gld_clusters(path: Path) -> dict[int, tuple[str, str]]:
    """landmark id → (cluster, overall cluster) of an H-GLDv2 cluster file; landmarks without a cluster left out."""
    clusters = {}
    with open(path, newline="") as f:
        for i, row in enumerate(csv.DictReader(f), start=2):
            try:
                lid = int(row["landmark_id"])
            except (KeyError, ValueError):
                raise ValueError(f"{path}:{i}: expected landmark_id,cluster,overall_cluster") from None
            if row.get("cluster") in (None, "", "nan", "NaN") or row.get("overall_cluster") in (None, "", "nan", "NaN"):
                continue
            clusters[lid] = (row["cluster"], row["overall_cluster"])
    return clusters
