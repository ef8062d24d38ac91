"""Interaction data for top-k recommendation: readers, id remapping, implicit feedback and splits.

Formats (``load_directory`` detects them):
* LightGCN text: one line per user, ``user item item ...`` (train.txt / valid.txt / test.txt);
* pair files: ``user<TAB>item[<TAB>count]`` per line (LightGCN-PyTorch's Last.fm data1.txt / test1.txt);
* RecBole atomic ``.inter``: tab-separated with a typed header (``user_id:token  item_id:token
  rating:float  timestamp:float``);
* CSV: a header ``user,item[,rating][,timestamp]``.
Ids are remapped to contiguous indices shared by every split, and the original ids are kept.
A malformed line is an error naming the file and line.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "Interactions",
    "RecData",
    "read_lightgcn",
    "read_pairs",
    "read_recbole",
    "read_csv",
    "load_directory",
    "implicit",
    "ratio_split",
    "temporal_split",
    "inductive_split",
]


@dataclass
class Interactions:
    """Parallel arrays of one set of interactions, in contiguous indices."""

    user: np.ndarray  # (n,) int64
    item: np.ndarray  # (n,) int64
    rating: np.ndarray | None = None  # (n,) float32
    timestamp: np.ndarray | None = None  # (n,) float64

    def __len__(self) -> int:
        return len(self.user)

    def take(self, mask_or_index) -> Interactions:
        pick = lambda a: None if a is None else a[mask_or_index]
        return Interactions(self.user[mask_or_index], self.item[mask_or_index], pick(self.rating), pick(self.timestamp))

    @staticmethod
    def concat(parts: list[Interactions]) -> Interactions:
        """The user and item arrays of several sets, one after another (ratings and timestamps dropped)."""
        return Interactions(np.concatenate([p.user for p in parts]), np.concatenate([p.item for p in parts]))

    def by_user(self) -> dict[int, np.ndarray]:
        order = np.argsort(self.user, kind="stable")
        users, starts = np.unique(self.user[order], return_index=True)
        return {int(u): order[s:e] for u, s, e in zip(users, starts, list(starts[1:]) + [len(order)])}


@dataclass
class RecData:
    """Splits over one index space. ``context``: the inductive protocol's interactions given at test time."""

    train: Interactions
    test: Interactions
    valid: Interactions | None = None
    context: Interactions | None = None
    user_ids: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))  # original id of each index
    item_ids: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))
    excluded_users: int = 0  # test users without any test item, left out of evaluation
    cleaning: dict = field(default_factory=dict)  # lines dropped when loading: duplicates, test pairs in train

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def fingerprint(self, splits: tuple[str, ...] = ("train", "valid", "test", "context")) -> str:
        """What a run's interactions are recognised by: each split's (user, item) pairs, and the ids."""
        from rankopt.runs import fingerprint

        parts = []
        for name in splits:
            inter = getattr(self, name)
            parts += [name] + ([] if inter is None else [inter.user, inter.item])
        return fingerprint(*parts, [str(u) for u in self.user_ids], [str(i) for i in self.item_ids])

    @property
    def n_items(self) -> int:
        return len(self.item_ids)


Raw = tuple[list, list, list | None, list | None]


def _int(token: str, path: Path, line: int) -> int:
    try:
        return int(token)
    except ValueError:
        raise ValueError(f"{path}:{line}: expected an integer id, got {token!r}") from None


def _token_lines(path: Path):
    """(line number, whitespace-separated tokens) of each non-blank line."""
    with open(path) as f:
        for n, line in enumerate(f, start=1):
            tokens = line.split()
            if tokens:
                yield n, tokens


def read_lightgcn(path: str | Path) -> Raw:
    """``user item item ...`` per line; a user with no items is allowed (and has no interaction)."""
    path = Path(path)
    users, items = [], []
    for n, tokens in _token_lines(path):
        u = _int(tokens[0], path, n)
        for t in tokens[1:]:
            users.append(u)
            items.append(_int(t, path, n))
    return users, items, None, None


def read_pairs(path: str | Path) -> Raw:
    """``user item [value]`` per line, whitespace-separated, no header."""
    path = Path(path)
    users, items = [], []
    for n, tokens in _token_lines(path):
        if len(tokens) < 2:
            raise ValueError(f"{path}:{n}: expected 'user item [value]', got {' '.join(tokens)!r}")
        users.append(_int(tokens[0], path, n))
        items.append(_int(tokens[1], path, n))
    return users, items, None, None


def _float(token: str, path: Path, line: int, what: str) -> float:
    try:
        return float(token)
    except ValueError:
        raise ValueError(f"{path}:{line}: {what} must be a number, got {token!r}") from None


def _columns(path: Path, names: list[str], rows, user: str, item: str, fields: str) -> Raw:
    """Raw columns of a table with header ``names`` from its (line number, fields) rows: the user and item
    columns, and rating / timestamp when the header has them."""
    iu, ii = names.index(user), names.index(item)
    ir = names.index("rating") if "rating" in names else None
    it = names.index("timestamp") if "timestamp" in names else None
    users, items, ratings, times = [], [], [] if ir is not None else None, [] if it is not None else None
    for n, row in rows:
        if len(row) != len(names):
            raise ValueError(f"{path}:{n}: expected {len(names)} {fields}, got {len(row)}")
        users.append(row[iu].strip())
        items.append(row[ii].strip())
        if ir is not None:
            ratings.append(_float(row[ir], path, n, "rating"))
        if it is not None:
            times.append(_float(row[it], path, n, "timestamp"))
    return users, items, ratings, times


def read_recbole(path: str | Path) -> Raw:
    """RecBole atomic .inter: typed header ``name:type``; user_id and item_id required."""
    path = Path(path)
    with open(path) as f:
        header = f.readline().rstrip("\n").split("\t")
        names = [h.split(":")[0] for h in header]
        if "user_id" not in names or "item_id" not in names:
            raise ValueError(f"{path}:1: expected a typed header with user_id:token and item_id:token, got {header!r}")
        rows = ((n, line.rstrip("\n").split("\t")) for n, line in enumerate(f, start=2) if line.strip())
        return _columns(path, names, rows, "user_id", "item_id", "tab-separated fields")


def read_csv(path: str | Path) -> Raw:
    """CSV with a header ``user,item[,rating][,timestamp]``."""
    path = Path(path)
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        if header[:2] != ["user", "item"]:
            raise ValueError(f"{path}:1: expected a header user,item[,rating][,timestamp], got {header!r}")
        rows = ((n, row) for n, row in enumerate(reader, start=2) if "".join(row).strip())
        return _columns(path, header, rows, "user", "item", "fields")


def _index(raws: list[Raw]) -> tuple[list[Interactions], np.ndarray, np.ndarray]:
    """Remap raw ids of several splits to one contiguous index space (sorted original ids)."""
    all_users = np.unique(np.concatenate([np.asarray(r[0]) for r in raws]))
    all_items = np.unique(np.concatenate([np.asarray(r[1]) for r in raws]))
    out = []
    for users, items, ratings, times in raws:
        u = np.searchsorted(all_users, np.asarray(users)).astype(np.int64)
        i = np.searchsorted(all_items, np.asarray(items)).astype(np.int64)
        r = None if ratings is None else np.asarray(ratings, dtype=np.float32)
        t = None if times is None else np.asarray(times, dtype=np.float64)
        out.append(Interactions(u, i, r, t))
    return out, all_users, all_items


def _unique_pairs(inter: Interactions) -> tuple[Interactions, int]:
    """The interactions with each (user, item) pair once (its earliest line, by timestamp where there is
    one), in their order, and how many lines repeated a pair."""
    key = inter.user.astype(np.int64) * (int(inter.item.max(initial=0)) + 1) + inter.item
    if len(np.unique(key)) == len(key):
        return inter, 0
    order = np.argsort(inter.timestamp, kind="stable") if inter.timestamp is not None else np.arange(len(key))
    _, first = np.unique(key[order], return_index=True)
    keep = np.sort(order[first])
    return inter.take(keep), len(inter) - len(keep)


def _not_in(inter: Interactions | None, known: Interactions) -> tuple[Interactions | None, int]:
    """``inter`` without the pairs already in ``known`` (a test pair seen in training is no test)."""
    if inter is None or len(inter) == 0:
        return inter, 0
    width = int(max(inter.item.max(initial=0), known.item.max(initial=0))) + 1
    seen = np.isin(inter.user.astype(np.int64) * width + inter.item, known.user.astype(np.int64) * width + known.item)
    return inter.take(~seen), int(seen.sum())


def _finish(train: Interactions, test: Interactions, valid, users, items, context=None, source="") -> RecData:
    """Clean the splits — each (user, item) pair once per split, valid and test pairs that training holds
    removed, said in one warning and kept in ``RecData.cleaning`` — and refuse empty ones."""
    cleaning = {}
    train, cleaning["duplicates_train"] = _unique_pairs(train)
    test, cleaning["duplicates_test"] = _unique_pairs(test)
    if valid is not None:
        valid, cleaning["duplicates_valid"] = _unique_pairs(valid)
        valid, cleaning["valid_in_train"] = _not_in(valid, train)
    test, cleaning["test_in_train"] = _not_in(test, train)
    if valid is not None:
        test, cleaning["test_in_valid"] = _not_in(test, valid)
    cleaning = {k: v for k, v in cleaning.items() if v}
    if cleaning:
        log.warning(
            "%s: dropped %s",
            source or "the interactions",
            ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in cleaning.items()),
        )
    for name, part in (("training", train), ("test", test)):
        if len(part) == 0:
            raise ValueError(
                f"{source or 'the data'}: no {name} interaction is left (after the rating threshold and "
                "the removal of duplicates): nothing to train or test on"
            )
    excluded = len(set(np.unique(train.user).tolist()) - set(np.unique(test.user).tolist())) if context is None else 0
    return RecData(train, test, valid, context, users, items, excluded, cleaning)


def load_directory(
    path: str | Path,
    *,
    split: str = "auto",
    ratios=(0.8, 0.1, 0.1),
    seed: int = 0,
    rating_threshold: float | None = None,
) -> RecData:
    """Read a folder in any supported format. Split files (train/valid/test) are kept as they are; a single
    interaction file (.inter, .csv) is split per user: ``split="temporal"`` (oldest first), ``"random"``
    (also ``"ratio"``; seeded by ``seed``), or ``"auto"``: temporal when it has timestamps, else random."""
    path = Path(path)
    if split not in ("auto", "temporal", "random", "ratio"):
        raise ValueError(f"split={split!r} is not one of auto, temporal, random")
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a folder of interaction files")
    split_files = ((path / "train.txt").is_file() and (path / "test.txt").is_file()) or (
        (path / "data1.txt").is_file() and (path / "test1.txt").is_file()
    )
    if split_files and split != "auto":
        raise ValueError(
            f"data.split={split}: {path} has its own split files (train/test), which are kept as they "
            "are; a split applies to a single interaction file (.inter, .csv)"
        )
    if split_files and rating_threshold is not None:
        raise ValueError(
            f"{path}: rating_threshold={rating_threshold} given, but its split files hold no ratings "
            "(user item lists): leave the threshold unset"
        )
    if (path / "train.txt").is_file() and (path / "test.txt").is_file():
        names = ["train.txt", "test.txt"] + (["valid.txt"] if (path / "valid.txt").is_file() else [])
        raws = [read_lightgcn(path / n) for n in names]
    elif (path / "data1.txt").is_file() and (path / "test1.txt").is_file():
        names = ["data1.txt", "test1.txt"]
        raws = [read_pairs(path / n) for n in names]
    else:
        singles = sorted(path.glob("*.inter")) or sorted(path.glob("*.csv"))
        if len(singles) != 1:
            raise FileNotFoundError(
                f"{path}: no train.txt + test.txt (LightGCN), data1.txt + test1.txt (pairs), single .inter "
                f"(RecBole) or single .csv (user,item[,rating][,timestamp]) found"
            )
        raw = read_recbole(singles[0]) if singles[0].suffix == ".inter" else read_csv(singles[0])
        (whole,), users, items = _index([raw])
        if rating_threshold is not None:
            whole = implicit(whole, rating_threshold)
        whole, repeated = _unique_pairs(whole)  # before splitting: a repeated pair never lands on both sides
        if repeated:
            log.warning("%s: dropped %d repeated (user, item) lines", singles[0], repeated)
        mode = ("temporal" if whole.timestamp is not None else "random") if split == "auto" else split
        if mode == "temporal" and whole.timestamp is None:
            raise ValueError(f"data.split=temporal: {singles[0]} has no timestamp column (use random)")
        train, valid, test = (
            temporal_split(whole, ratios) if mode == "temporal" else ratio_split(whole, ratios, seed=seed)
        )
        return _finish(train, test, valid, users, items, source=str(singles[0]))
    parts, users, items = _index(raws)
    train, test = parts[0], parts[1]
    valid = parts[2] if len(parts) > 2 else None
    return _finish(train, test, valid, users, items, source=str(path))


def implicit(inter: Interactions, threshold: float) -> Interactions:
    """Keep interactions rated at least ``threshold`` (explicit → implicit feedback)."""
    if inter.rating is None:
        raise ValueError("rating_threshold given but the interactions have no rating column")
    return inter.take(inter.rating >= threshold)


def _per_user_cut(inter: Interactions, ratios, order_fn) -> tuple[Interactions, Interactions | None, Interactions]:
    if len(ratios) != 3 or abs(sum(ratios) - 1) > 1e-6 or min(ratios) < 0:
        raise ValueError(f"ratios must be three non-negative numbers summing to 1 (train, valid, test); got {ratios}")
    parts: list[list[np.ndarray]] = [[], [], []]
    for _, idx in inter.by_user().items():
        idx = order_fn(idx)
        n = len(idx)
        n_test = int(round(n * ratios[2]))
        n_valid = int(round(n * ratios[1]))
        n_train = n - n_test - n_valid
        parts[0].append(idx[:n_train])
        parts[1].append(idx[n_train : n_train + n_valid])
        parts[2].append(idx[n_train + n_valid :])
    pieces = [inter.take(np.concatenate(p) if p else np.empty(0, dtype=np.int64)) for p in parts]
    return pieces[0], (pieces[1] if ratios[1] > 0 else None), pieces[2]


def ratio_split(inter: Interactions, ratios=(0.8, 0.1, 0.1), seed: int = 0):
    """Random per-user split into (train, valid, test) by ratios (RecBole's RS)."""
    rng = np.random.default_rng(seed)
    return _per_user_cut(inter, ratios, lambda idx: rng.permutation(idx))


def temporal_split(inter: Interactions, ratios=(0.8, 0.1, 0.1)):
    """Per-user split by time: each user's oldest interactions train, newest test (ties by file order)."""
    if inter.timestamp is None:
        raise ValueError("a temporal split needs timestamps")
    return _per_user_cut(inter, ratios, lambda idx: idx[np.argsort(inter.timestamp[idx], kind="stable")])


def inductive_split(data: RecData, held_out: float = 0.1, context: float = 0.5, seed: int = 0) -> RecData:
    """Hold out a fraction of the users entirely: their interactions (train and test of the source split)
    are removed from training and the graph; at test time a ``context`` fraction of each is given and
    the rest is the target to rank. The user ids stay in the index space (with no trained interaction)."""
    if not 0 < held_out < 1 or not 0 < context < 1:
        raise ValueError(f"held_out and context must be in (0, 1); got {held_out}, {context}")
    rng = np.random.default_rng(seed)
    users = np.unique(data.train.user)
    chosen = rng.choice(users, size=max(1, int(round(held_out * len(users)))), replace=False)
    is_held = np.zeros(data.n_users, dtype=bool)
    is_held[chosen] = True
    everything = [data.train, data.test] + ([data.valid] if data.valid is not None else [])
    held = Interactions(
        np.concatenate([p.user[is_held[p.user]] for p in everything]),
        np.concatenate([p.item[is_held[p.user]] for p in everything]),
    )
    ctx, _, target = ratio_split(held, (context, 0.0, 1 - context), seed=seed)
    keep = lambda p: p.take(~is_held[p.user])
    return RecData(
        keep(data.train), target, None if data.valid is None else keep(data.valid), ctx, data.user_ids, data.item_ids, 0
    )
