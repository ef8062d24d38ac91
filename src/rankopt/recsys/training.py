"""What a recommender training step draws: BPR triples with uniform negatives (LightGCN-PyTorch's
sampler) and, for the candidate losses, per-user blocks of sampled positives and uniform / PPR
negatives. The losses computed on them are :mod:`rankopt.recsys.losses`; the step is
:class:`rankopt.recsys.module.RecommenderModule`'s.

BPR triples (``bpr_triples``): as many (user, positive, negative) triples per epoch as training
interactions, negatives drawn uniformly among the items the user has not interacted with in training.
"""

from __future__ import annotations

import numpy as np

from rankopt.recsys.data import Interactions

__all__ = ["interaction_keys", "uniform_negatives", "bpr_triples", "CandidateSampler"]


def interaction_keys(train: Interactions, n_items: int) -> np.ndarray:
    """Sorted unique user·n_items + item of the interactions: membership tests by searchsorted."""
    return np.unique(train.user.astype(np.int64) * n_items + train.item)


def uniform_negatives(
    keys: np.ndarray, n_items: int, users: np.ndarray, rng: np.random.Generator, max_rounds: int = 1000
) -> np.ndarray:
    """One uniform item per user that the user has not interacted with: vectorised rejection sampling
    against the sorted (user·n_items + item) keys of the training interactions."""
    out = rng.integers(0, n_items, len(users))
    for _ in range(max_rounds):
        key = users.astype(np.int64) * n_items + out
        pos = np.searchsorted(keys, key).clip(max=len(keys) - 1)
        bad = keys[pos] == key
        if not bad.any():
            return out
        out[bad] = rng.integers(0, n_items, int(bad.sum()))
    raise ValueError("could not sample negatives: some users have interacted with (almost) every item")


def bpr_triples(
    train: Interactions, n_items: int, rng: np.random.Generator, keys: np.ndarray | None = None, sampling: str = "user"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One epoch of (user, positive, negative) triples, as many as training interactions.
    ``sampling="user"``: LightGCN-PyTorch's sampler, users drawn uniformly (with replacement) among those
    with training items, then one of their positives uniformly; ``"interaction"``: a shuffled pass over
    the interactions (most re-implementations; weights users by their activity)."""
    if sampling == "interaction":
        order = rng.permutation(len(train))
        users, pos = train.user[order], train.item[order]
    elif sampling == "user":
        order = np.argsort(train.user, kind="stable")
        active, starts, counts = np.unique(train.user[order], return_index=True, return_counts=True)
        draw = rng.integers(0, len(active), len(train))
        pick = starts[draw] + (rng.random(len(train)) * counts[draw]).astype(np.int64)
        users, pos = active[draw], train.item[order[pick]]
    else:
        raise ValueError(f"sampling={sampling!r} is not one of user, interaction")
    keys = interaction_keys(train, n_items) if keys is None else keys
    return users, pos, uniform_negatives(keys, n_items, users, rng)


class CandidateSampler:
    """Per epoch, each training user once, in blocks: up to ``n_pos`` of its positives (sampled without
    replacement) and ``n_neg`` negatives: a ``ppr_mix`` share from its PPR candidates (drawn anew at each
    step, uniformly or, with ``ppr_scores``, in proportion to their PPR values), the rest uniform
    non-interacted items. Yields (users (B,), candidates (B, n_pos + n_neg), levels (B, ·)) with level 1
    for positives, 0 for negatives, −1 for padding (users with fewer than n_pos positives).

    ``n_neg="all"``: every item the user has not interacted with is a negative; yields (users, None,
    levels (B, n_items) int8): 1 at the sampled positives, −1 at the user's other training items, 0 elsewhere."""

    def __init__(
        self,
        train: Interactions,
        n_items: int,
        n_pos: int,
        n_neg: int | str,
        ppr: np.ndarray | None = None,
        ppr_mix: float = 0.5,
        keys: np.ndarray | None = None,
        ppr_scores: np.ndarray | None = None,
    ) -> None:
        self.pairs = np.unique(np.stack([train.user, train.item], axis=1).astype(np.int64), axis=0)  # sorted by user
        self.active, self.starts, self.counts = np.unique(self.pairs[:, 0], return_index=True, return_counts=True)
        self.keys = interaction_keys(train, n_items) if keys is None else keys
        self.everything = n_neg == "all"
        if self.everything and ppr is not None:
            raise ValueError("n_neg='all' ranks against every item: PPR negatives have nothing to add")
        self.n_items, self.n_pos, self.n_neg, self.ppr, self.ppr_scores = n_items, n_pos, n_neg, ppr, ppr_scores
        self.n_ppr = int(round(n_neg * ppr_mix)) if ppr is not None else 0
        if ppr is not None and self.n_ppr > ppr.shape[1]:
            raise ValueError(
                f"{self.n_ppr} PPR negatives per step but only {ppr.shape[1]} PPR candidates per user (raise ppr_m)"
            )
        if ppr_scores is not None and (ppr is None or ppr_scores.shape != ppr.shape):
            raise ValueError("ppr_scores must come with ppr and have its shape (users, PPR candidates)")

    def steps(self, batch_users: int) -> int:
        return -(-len(self.active) // batch_users)

    def _ppr_draw(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """n_ppr of each user's PPR candidates without replacement: uniformly, or in proportion to their
        PPR values (Gumbel top-k: the k largest log p + Gumbel noise are a draw without replacement ∝ p)."""
        noise = rng.random((len(users), self.ppr.shape[1]))
        if self.ppr_scores is None:
            keys = -noise  # ascending noise: the draw order of earlier releases, so recorded runs replay
        else:  # zero PPR (an unreachable item) only after every reachable one
            keys = np.log(np.maximum(self.ppr_scores[users], 1e-30)) - np.log(-np.log(np.maximum(noise, 1e-300)))
        pick = np.argsort(-keys, axis=1)[:, : self.n_ppr]
        return np.take_along_axis(self.ppr[users], pick, axis=1)

    def _catalogue_levels(self, rows: np.ndarray, pos: np.ndarray) -> np.ndarray:
        levels = np.zeros((len(rows), self.n_items), dtype=np.int8)
        counts = self.counts[rows]
        at = (
            np.repeat(self.starts[rows], counts)
            + np.arange(counts.sum())
            - np.repeat(np.cumsum(counts) - counts, counts)
        )
        levels[np.repeat(np.arange(len(rows)), counts), self.pairs[at, 1]] = -1  # known items are not negatives
        r, c = np.nonzero(pos >= 0)
        levels[r, pos[r, c]] = 1
        return levels

    def epoch(self, rng: np.random.Generator, batch_users: int):
        order = np.lexsort((rng.random(len(self.pairs)), self.pairs[:, 0]))  # by user, random within a user
        rank = np.arange(len(self.pairs)) - np.repeat(self.starts, self.counts)
        keep = rank < self.n_pos
        positives = np.full((len(self.active), self.n_pos), -1, dtype=np.int64)
        positives[np.repeat(np.arange(len(self.active)), self.counts)[keep], rank[keep]] = self.pairs[order[keep], 1]
        perm = rng.permutation(len(self.active))
        for start in range(0, len(perm), batch_users):
            rows = perm[start : start + batch_users]
            users, pos = self.active[rows], positives[rows]
            if self.everything:
                yield users, None, self._catalogue_levels(rows, pos)
                continue
            negatives = [
                uniform_negatives(self.keys, self.n_items, np.repeat(users, self.n_neg - self.n_ppr), rng).reshape(
                    len(users), -1
                )
            ]
            if self.n_ppr:
                negatives.insert(0, self._ppr_draw(users, rng))
            neg = np.concatenate(negatives, axis=1)
            levels = np.concatenate([np.where(pos >= 0, 1, -1), np.zeros(neg.shape, dtype=np.int64)], axis=1)
            yield users, np.concatenate([np.maximum(pos, 0), neg], axis=1), levels
