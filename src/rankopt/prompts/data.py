"""The few-shot protocol and the image tower's feature cache.

``shots`` images per class are drawn by seed from the training split (CoOp's protocol: each seed its own
draw), validation shots apart from them; the test split is used whole (or its first ``test_limit``
images). The frozen image tower's features of the drawn images are computed once per run folder and
kept in ``features/<split>.pt`` with the tower's identity: a changed tower (weights, input size,
inversion) or another draw invalidates the cache, so training steps touch only the text side.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from rankopt.atomic import atomic_torch_save
from rankopt.data import Subset, check_root, create_dataset
from rankopt.prompts.config import PromptRunConfig
from rankopt.train.protocol import EvalSet, Splits

__all__ = [
    "FewShot",
    "few_shot",
    "draw_shots",
    "class_names",
    "TowerFeatures",
    "tower_features",
    "shared_cache_path",
    "DIGITS",
]

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _dataset_names(name: str) -> list[str]:
    if name == "fashion-mnist":
        from rankopt.data.fashion_mnist import CLASSES

        return [c.lower().replace("/", " or ") for c in CLASSES]
    if name == "mnist-subset":
        return [f"digit {d}" for d in DIGITS]
    raise ValueError(f"no class names are known for dataset {name!r}: give data.class_names")


def class_names(cfg: PromptRunConfig, n_classes: int) -> list[str]:
    """The name of every class the dataset labels (data.class_names, or the dataset's own)."""
    names = cfg.data.class_names or _dataset_names(cfg.data.name)
    if len(names) < n_classes:
        raise ValueError(
            f"data.class_names has {len(names)} names but the dataset labels {n_classes} classes: "
            f"class {len(names)} has no name"
        )
    return list(names)


def draw_shots(labels: np.ndarray, shots: int, seed: int, valid_shots: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of ``shots`` training and ``valid_shots`` validation images per class (disjoint), drawn
    uniformly without replacement by ``seed``; a class with too few images is an error naming it."""
    rng = np.random.default_rng(seed)
    train, valid = [], []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) < shots + valid_shots:
            raise ValueError(
                f"class {int(c)} has {len(members)} training images: fewer than data.shots={shots}"
                + (f" + data.valid_shots={valid_shots}" if valid_shots else "")
            )
        chosen = rng.choice(members, shots + valid_shots, replace=False)
        train.append(np.sort(chosen[:shots]))
        valid.append(np.sort(chosen[shots:]))
    return np.concatenate(train), np.concatenate(valid)


@dataclass
class FewShot:
    """The run's images: few-shot training (and validation) subsets and the test split, labels 0..C-1
    over ``classes`` (the dataset's class ids kept), and the class names in that order."""

    train: Dataset
    valid: Dataset | None
    test: Dataset
    classes: list[int]
    names: list[str]

    def splits(self) -> Splits:
        """As the run layer records any run's data (splits/*.txt, fingerprints checked on resume)."""
        carved = {"train": "data.shots per class, drawn by train.seed"}
        if self.valid is not None:
            carved["valid"] = "data.valid_shots per class, drawn apart from the shots"
        return Splits(
            self.train,
            None if self.valid is None else EvalSet("train", self.valid),
            EvalSet("test", self.test),
            carved,
            train_split="train",
            valid_split="train",
            test_split="test",
        )

    def describe(self) -> dict:
        out = {"train": {"n_items": len(self.train), "carved": "data.shots per class, drawn by train.seed"}}
        out["valid"] = None if self.valid is None else {"n_items": len(self.valid), "carved": "data.valid_shots"}
        out["test"] = {"split": "test", "n_items": len(self.test)}
        return {**out, "classes": self.classes, "class_names": self.names}


class _Relabelled(Subset):
    """(image, class position 0..C-1, index) of some of a dataset's items (a Subset: the run folder's
    manifest records them as any split's items)."""

    def __init__(self, dataset, indices: np.ndarray, position: dict[int, int]) -> None:
        super().__init__(dataset, indices)
        self.targets = torch.tensor([position[int(c)] for c in self.labels[:, 0]], dtype=torch.long)

    def __getitem__(self, i: int):
        image, _, _ = super().__getitem__(i)
        return image, self.targets[i], i


def few_shot(cfg: PromptRunConfig) -> FewShot:
    d = cfg.data
    check_root(d.name, d.root)
    train_set = create_dataset(d.name, d.root, "train")
    test_set = create_dataset(d.name, d.root, "test")
    train_labels = train_set.labels[:, 0].numpy()
    present = sorted(int(c) for c in np.unique(train_labels))
    classes = present if d.classes is None else sorted(int(c) for c in d.classes)
    unknown = [c for c in classes if c not in present]
    if unknown:
        raise ValueError(f"data.classes: class {unknown[0]} is not among the dataset's classes {present}")
    names = class_names(cfg, max(present) + 1)
    position = {c: i for i, c in enumerate(classes)}
    keep = np.flatnonzero(np.isin(train_labels, classes))
    train_idx, valid_idx = draw_shots(train_labels[keep], d.shots, cfg.train.seed, d.valid_shots)
    test_keep = np.flatnonzero(np.isin(test_set.labels[:, 0].numpy(), classes))
    if d.test_limit is not None:
        test_keep = test_keep[: d.test_limit]
    if not len(test_keep):
        raise ValueError(f"the test split of {d.name} has no image of the classes {classes}")
    return FewShot(
        _Relabelled(train_set, keep[train_idx], position),
        _Relabelled(train_set, keep[valid_idx], position) if d.valid_shots else None,
        _Relabelled(test_set, test_keep, position),
        classes,
        [names[c] for c in classes],
    )


@dataclass
class TowerFeatures:
    """The image tower's features of a set of images: global (N, D), local (N, L, D), targets (N,)."""

    global_feat: torch.Tensor
    local_feat: torch.Tensor
    targets: torch.Tensor

    def __len__(self) -> int:
        return len(self.targets)


def embed_images(
    tower: Callable, dataset: Dataset, batch_size: int = 64, progress: Callable[[int, int], None] | None = None
) -> TowerFeatures:
    """The tower's (global, local) features of every image of ``dataset``, in order."""
    g, loc, y, done = [], [], [], 0
    with torch.no_grad():
        for images, targets, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            a, b = tower(images)
            g.append(a.cpu())
            loc.append(b.cpu())
            y.append(targets)
            done += len(images)
            if progress is not None:
                progress(done, len(dataset))
    return TowerFeatures(torch.cat(g), torch.cat(loc), torch.cat(y))


def _identity(dataset: Dataset) -> str:
    rows = dataset.indices if isinstance(dataset, Subset) else np.arange(len(dataset))
    return hashlib.sha256(np.asarray(rows, dtype=np.int64).tobytes()).hexdigest()[:16]


def shared_cache_path(folder: str | Path, source: str, dataset: Dataset) -> Path:
    """Where a shared feature cache (``model.feature_cache``) keeps these images' features by this tower."""
    key = hashlib.sha256(f"{source}|{_identity(dataset)}".encode()).hexdigest()[:20]
    return Path(folder) / f"test-{key}.pt"


def tower_features(
    tower,
    source: str,
    dataset: Dataset,
    path: Path,
    progress: Callable[[int, int], None] | None = None,
    half: bool = False,
) -> TowerFeatures:
    """``path`` if it holds the features of these images by this tower (``source``), else computed and
    saved there (atomically); ``half``: local features kept in float16 (a test split's, shared)."""
    key = f"{source}|{_identity(dataset)}"
    if path.is_file():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            if blob.get("source") == key:
                return TowerFeatures(blob["global"], blob["local"], blob["targets"])
        except Exception:  # a damaged cache is recomputed, never trusted
            pass
    feats = embed_images(tower, dataset, progress=progress)
    if half:
        feats.local_feat = feats.local_feat.half()
    atomic_torch_save(
        {"source": key, "global": feats.global_feat, "local": feats.local_feat, "targets": feats.targets}, path
    )
    return feats
