"""Datasets in their real on-disk formats, and samplers for rank losses.

``create_dataset(name, root, split, ...)`` builds one from the names recipes use.
"""

from __future__ import annotations

from rankopt.data.base import BadImageError, DatasetNotFoundError, ImageList, Subset
from rankopt.data.fashion_mnist import FashionMNIST
from rankopt.data.generic import available_splits, csv_images, image_folder
from rankopt.data.mnist_subset import MNISTSubset
from rankopt.data.retrieval_sets import cars196, cub200, dyml, gldv2, inaturalist, inshop, sop
from rankopt.data.samplers import HierarchicalSampler, MPerClassSampler
from rankopt.registry import Registry

DATASETS = Registry("dataset", normalize=lambda name: name.lower().replace("_", "-"))
# grey28: items are ready (1, 28, 28) tensors in [0, 1] (no image transforms, one channel)
DATASETS.register("fashion-mnist", lambda root=None, split="train", **kw: FashionMNIST(split, root, **kw), grey28=True)
for _name, _loader in (
    ("sop", sop),
    ("cub", cub200),
    ("inaturalist", inaturalist),
    ("inshop", inshop),
    ("dyml", dyml),
    ("cars196", cars196),
    ("gldv2", gldv2),
    ("image-folder", image_folder),
):
    DATASETS.register(_name, _loader)
DATASETS.register("csv", lambda root, split=None, **kw: csv_images(root, split, **kw))
DATASETS.register("mnist-subset", lambda root=None, split="train", **kw: MNISTSubset(split, **kw), grey28=True)


def check_root(name: str, root) -> None:
    """A dataset that lives in a folder of its own needs ``root``: refused before any work when unset."""
    if root is None and not DATASETS.entry(name).meta.get("grey28"):
        raise ValueError(
            f"data.root is unset: the {DATASETS.entry(name).name} dataset is read from its folder; give "
            "--data-dir DIR (or --set data.root=DIR)"
        )


def create_dataset(name: str, root=None, split: str = "train", **kwargs):
    """The dataset registered under ``name``; an unknown name raises ValueError with the closest names."""
    return DATASETS.create(name, root=root, split=split, **kwargs)


__all__ = [
    "ImageList",
    "DatasetNotFoundError",
    "BadImageError",
    "FashionMNIST",
    "image_folder",
    "csv_images",
    "sop",
    "cub200",
    "inaturalist",
    "inshop",
    "dyml",
    "cars196",
    "gldv2",
    "MPerClassSampler",
    "HierarchicalSampler",
    "create_dataset",
    "check_root",
    "DATASETS",
    "Subset",
    "available_splits",
]
