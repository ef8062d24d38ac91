"""A small synthetic implicit-feedback dataset to try ``rankopt recsys`` on without downloading one.

Users fall into taste groups; each group prefers its own block of items, popularity within a block
is Zipf-like, and a share of every user's interactions is drawn from the whole catalogue (noise).
Each interaction has a rating (higher inside the user's group) and a timestamp (a user's history in
time order), written as a CSV with the header ``user,item,rating,timestamp`` — a format
:func:`rankopt.recsys.load_directory` reads and splits per user in time.

>>> import tempfile
>>> path, n = write_example(tempfile.mkdtemp(), n_users=50, n_items=40, seed=0)
>>> path.name, n > 500
('interactions.csv', True)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rankopt.atomic import atomic_write_text

__all__ = ["write_example"]


def write_example(
    out_dir: str | Path,
    n_users: int = 600,
    n_items: int = 400,
    n_groups: int = 8,
    per_user: tuple[int, int] = (15, 60),
    noise: float = 0.15,
    seed: int = 0,
) -> tuple[Path, int]:
    """Write ``out_dir/interactions.csv``; returns (its path, the number of interactions)."""
    if n_users < 2 or n_items < 2 * n_groups:
        raise ValueError(f"the example needs at least 2 users and {2 * n_groups} items (got {n_users}, {n_items})")
    rng = np.random.default_rng(seed)
    group_of_item = np.arange(n_items) % n_groups
    popularity = 1.0 / (1 + rng.permutation(n_items)) ** 0.8  # Zipf-like, independent of the group
    rows = ["user,item,rating,timestamp"]
    for u in range(n_users):
        group = rng.integers(n_groups)
        n = int(rng.integers(per_user[0], min(per_user[1], n_items // 2) + 1))
        weight = popularity * np.where(group_of_item == group, 1.0, noise * n_groups / (n_groups - 1) / 10)
        items = rng.choice(n_items, size=n, replace=False, p=weight / weight.sum())
        ratings = np.where(group_of_item[items] == group, rng.integers(3, 6, n), rng.integers(1, 4, n))
        times = 1_600_000_000 + np.sort(rng.integers(0, 10_000_000, n))
        rows += [f"u{u},i{i},{r},{t}" for i, r, t in zip(items.tolist(), ratings.tolist(), times.tolist())]
    path = Path(out_dir) / "interactions.csv"
    atomic_write_text(path, "\n".join(rows) + "\n")
    return path, len(rows) - 1
