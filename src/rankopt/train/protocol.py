"""The evaluation protocol of a run: what it trains on, what selects its epoch, what tests it.

A run names a *selection* split and a *test* split, each evaluated leave-one-out (every item queries
the others) or as query → gallery. Selection never reads the test split. A dataset without a
validation split gets one carved from its training split, in the relation its test split has to
training: class-disjoint for the retrieval benchmarks (a seeded ``valid_fraction`` of the training
classes), stratified by class over images for Fashion-MNIST (same classes, other images). An image
folder or CSV without splits is split the same seeded, class-disjoint way, test included. Every part
a run trains or evaluates on (train, valid, test, test_gallery) is recorded in its folder as the
dataset split it comes from and the indices of its items there (``Splits.items``), so that readers
rebuild exactly those items (``from_items``) and recognise changed data by its fingerprint.
Training labels are renumbered 0..K-1 over the training set (class proxies need it); evaluation
sets keep the dataset-wide ids, so a query and a gallery item of one class share a label.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from rankopt.data import Subset, available_splits
from rankopt.runs import SplitItems, fingerprint

__all__ = [
    "EvalSet",
    "Splits",
    "carve",
    "standard_test",
    "test_splits",
    "build_splits",
    "from_items",
    "base_of",
    "CARVE_BY",
    "PARTS",
]

PARTS = ("train", "valid", "test", "test_gallery")

# how a validation split is carved from training: like each dataset's own test split
CARVE_BY = {"fashion-mnist": "images", "mnist-subset": "images"}  # every other dataset: "classes"
USER_DATA = ("image-folder", "csv")


@dataclass
class EvalSet:
    """One evaluation: queries ranked against a gallery, or leave-one-out when gallery is None."""

    split: str
    queries: Dataset
    gallery: Dataset | None = None
    gallery_split: str | None = None

    @property
    def mode(self) -> str:
        return "leave-one-out" if self.gallery is None else "query-gallery"

    @property
    def parts(self) -> list[Dataset]:
        """What is embedded: the queries, then the gallery if there is one (the evaluation loaders' order)."""
        return [self.queries] + ([self.gallery] if self.gallery is not None else [])

    def describe(self) -> dict:
        out = {"split": self.split, "mode": self.mode, "n_queries": len(self.queries)}
        if self.gallery is not None:
            out.update(gallery_split=self.gallery_split, n_gallery=len(self.gallery))
        return out


@dataclass
class Splits:
    train: Dataset
    valid: EvalSet | None
    test: EvalSet
    carved: dict[str, str] = field(default_factory=dict)  # split → how it was carved
    # the dataset split each part reads (None: an unsplit image folder or CSV, read whole)
    train_split: str | None = None
    valid_split: str | None = None
    test_split: str | None = None

    def describe(self) -> dict:
        return {
            "train": {
                "n_items": len(self.train),
                **({"carved": self.carved["train"]} if "train" in self.carved else {}),
            },
            "valid": None
            if self.valid is None
            else {**self.valid.describe(), **({"carved": self.carved["valid"]} if "valid" in self.carved else {})},
            "test": {**self.test.describe(), **({"carved": self.carved["test"]} if "test" in self.carved else {})},
        }

    def parts(self) -> dict[str, tuple[str | None, Dataset]]:
        """Each part's dataset split (None: an unsplit dataset read whole) and its items."""
        out = {"train": (self.train_split, self.train)}
        if self.valid is not None:
            out["valid"] = (self.valid_split, self.valid.queries)
        out["test"] = (self.test_split, self.test.queries)
        if self.test.gallery is not None:
            out["test_gallery"] = (self.test.gallery_split, self.test.gallery)
        return out

    def items(self, root: str | Path | None) -> dict[str, SplitItems]:
        """The recorded form of every part: its split, the indices of its items there, their paths."""
        out = {}
        for name, (split, ds) in self.parts().items():
            base, idx = base_of(ds)
            out[name] = SplitItems(split, idx, _identities(base, idx, root))
        return out

    def fingerprint(self, root: str | Path | None, parts: tuple[str, ...] = PARTS) -> str:
        """What the run's data (or only some ``parts`` of it) is recognised by: each part's split, items,
        identities and labels."""
        out = []
        for name, item in self.items(root).items():
            if name not in parts:
                continue
            base, _ = base_of(self.parts()[name][1])
            out += [name, str(item.split), item.indices, item.items, base.labels[item.indices].numpy()]
        return fingerprint(*out)

    def record(self, folder, cfg, resume) -> None:
        """Before training: a resumed run's data must be its own (fingerprint); rank 0 writes the config
        and the manifest of every part's items."""
        from rankopt.runs import is_rank_zero

        root = cfg.data.root
        data_fingerprint = self.fingerprint(root)
        if resume is not None:
            folder.check_data(data_fingerprint, "the dataset")
        if is_rank_zero():
            folder.write_config(cfg)
            folder.write_manifest(data_fingerprint, self.fingerprint(root, ("test", "test_gallery")), self.items(root))


def base_of(ds) -> tuple[Dataset, np.ndarray]:
    """The dataset a chain of Subsets reads, and the indices of the chain's items in it."""
    idx = None
    while isinstance(ds, Subset):
        idx = ds.indices if idx is None else ds.indices[idx]
        ds = ds.dataset
    return ds, (np.arange(len(ds), dtype=np.int64) if idx is None else np.asarray(idx, dtype=np.int64))


def _identities(base, idx: np.ndarray, root) -> list[str]:
    """Image paths relative to the data root, or the indices (datasets without files per item)."""
    paths = getattr(base, "paths", None)
    if paths is None:
        return [str(i) for i in idx.tolist()]
    root_path = Path(root) if root else None
    out = []
    for i in idx.tolist():
        p = Path(paths[i])
        try:
            out.append(p.relative_to(root_path).as_posix() if root_path is not None and root_path.is_dir() else str(p))
        except ValueError:
            out.append(str(p))
    return out


def standard_test(name: str, options: dict) -> tuple[str, str | None]:
    """(query split, gallery split or None) of a dataset's published test protocol."""
    if name == "inshop":
        return "query", "gallery"
    if name == "dyml":
        return ("test", None) if options.get("variant") == "product" else ("query", "gallery")
    if name == "gldv2":
        return "index", None
    return "test", None


def test_splits(data_cfg) -> tuple[str, str | None]:
    """(query split, gallery split or None) of a run: the dataset's protocol unless the config names them."""
    q_split, g_split = standard_test(data_cfg.name.lower().replace("_", "-"), data_cfg.options)
    if data_cfg.test_split != "auto":
        q_split = data_cfg.test_split
    if data_cfg.gallery_split != "auto":
        g_split = None if data_cfg.gallery_split in (None, "none") else data_cfg.gallery_split
    return q_split, g_split


def carve(labels: np.ndarray, fraction: float, by: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split items (finest labels ``labels`` (N,)) into (kept, carved) index arrays, seeded.

    by="classes": a ``fraction`` of the classes (at least one, at most all but one) goes to the carved
    part with all their items. by="images": in every class, round(fraction · its size) items go.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"the carved fraction must be in (0, 1); got {fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    if by == "classes":
        classes = np.unique(labels)
        if len(classes) < 2:
            raise ValueError(f"cannot carve a class-disjoint split from {len(classes)} class(es)")
        n = min(len(classes) - 1, max(1, int(round(fraction * len(classes)))))
        chosen = rng.choice(classes, size=n, replace=False)
        out = np.isin(labels, chosen)
    elif by == "images":
        order = np.lexsort((rng.random(len(labels)), labels))  # by class, random within a class
        sorted_labels = labels[order]
        starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
        sizes = np.diff(np.r_[starts, len(labels)])
        rank = np.arange(len(labels)) - np.repeat(starts, sizes)
        take = np.repeat(np.rint(fraction * sizes).astype(np.int64), sizes)
        out = np.zeros(len(labels), dtype=bool)
        out[order[rank < take]] = True
    else:
        raise ValueError(f"carve by={by!r} is not 'classes' or 'images'")
    if out.all() or not out.any():
        raise ValueError(f"carving {fraction:.0%} by {by} from {len(labels)} items leaves one side empty")
    return np.flatnonzero(~out), np.flatnonzero(out)


def _first(ds, n: int | None):
    return ds if not n or n >= len(ds) else Subset(ds, np.arange(n))


def build_splits(data_cfg, load: Callable[[str | None, bool], Dataset]) -> Splits:
    """The train set and the valid/test evaluations of ``data_cfg`` (a DataConfig).

    ``load(split, train)`` reads one split of the dataset (split None: an unsplit image folder or CSV
    as a whole) with training (``train=True``) or evaluation transforms.
    """
    d = data_cfg
    name = d.name.lower().replace("_", "-")
    carved: dict[str, str] = {}
    seed = d.split_seed

    def loaded(split, train):
        return _first(load(split, train), d.limit)

    whole = None
    if name in USER_DATA and available_splits(name, d.root) is None:
        # no splits in the data: seeded class-disjoint test split, then valid from the rest
        whole = loaded(None, False)
        rest, test_idx = carve(whole.labels[:, 0].numpy(), d.test_fraction, "classes", seed)
        test = EvalSet("test", Subset(whole, test_idx))
        carved["test"] = f"{d.test_fraction:g} of the classes (seed {seed})"
        train_full, train_eval, base_idx = loaded(None, True), whole, rest
    else:
        q_split, g_split = test_splits(d)
        if q_split == d.train_split:
            raise ValueError(f"data.test_split={q_split!r} is the training split: a test must be held out")
        test = EvalSet(q_split, loaded(q_split, False), loaded(g_split, False) if g_split else None, g_split)
        train_full, train_eval = loaded(d.train_split, True), None
        base_idx = np.arange(len(train_full))

    valid = None
    train_idx = base_idx
    if d.valid in (None, "none"):
        pass
    elif d.valid == "carve":
        by = CARVE_BY.get(name, "classes")
        keep, out = carve(train_full.labels[base_idx, 0].numpy(), d.valid_fraction, by, seed + 1)
        train_idx, valid_idx = base_idx[keep], base_idx[out]
        if train_eval is None:
            train_eval = loaded(d.train_split, False)
        valid = EvalSet("valid", Subset(train_eval, valid_idx))
        carved["valid"] = f"{d.valid_fraction:g} of the training {by} (seed {seed + 1})"
        carved["train"] = "the training split less valid"
    else:
        if d.valid in (test.split, test.gallery_split):
            raise ValueError(f"data.valid={d.valid!r} is a test split: selection must never read the test data")
        valid = EvalSet(d.valid, loaded(d.valid, False))

    train = Subset(train_full, train_idx, relabel=True)
    if d.train_limit:
        train = Subset(train, np.arange(min(d.train_limit, len(train))))
    source = None if whole is not None else d.train_split  # where training (and a carved valid) items come from
    valid_split = None if valid is None else (source if d.valid == "carve" else d.valid)
    return Splits(
        train,
        valid,
        test,
        carved,
        train_split=source,
        valid_split=valid_split,
        test_split=None if whole is not None else test.split,
    )


def from_items(items: dict[str, SplitItems], load: Callable[[str | None, bool], Dataset]) -> Splits:
    """The parts a run recorded (``RunFolder.split_items``), rebuilt from the dataset: each split read
    once by ``load(split, train)`` (evaluation transforms: ``train=False``), its items taken by index."""
    cache: dict = {}

    def part(name: str, relabel: bool = False):
        item = items[name]
        if item.split not in cache:
            cache[item.split] = load(item.split, False)
        ds = cache[item.split]
        if len(item.indices) and int(item.indices.max()) >= len(ds):
            raise ValueError(
                f"the run's {name} items reach index {int(item.indices.max())} but the dataset's "
                f"{item.split or 'images'} now has {len(ds)}: the data changed since the run was trained"
            )
        return Subset(ds, item.indices, relabel=relabel), item.split

    train, train_split = part("train", relabel=True)
    valid = valid_split = None
    if "valid" in items:
        queries, valid_split = part("valid")
        valid = EvalSet("valid" if valid_split in (None, items["train"].split) else valid_split, queries)
    queries, test_split = part("test")
    gallery = gallery_split = None
    if "test_gallery" in items:
        gallery, gallery_split = part("test_gallery")
    test = EvalSet(test_split or "test", queries, gallery, gallery_split)
    return Splits(train, valid, test, train_split=train_split, valid_split=valid_split, test_split=test_split)
