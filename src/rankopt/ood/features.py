"""The feature sets OOD detectors read: avg-pooled features (N, d), optionally std-pooled features,
logits and labels, plus the linear head that maps features to logits.

A feature set is an npz file with ``features`` (N, d) float and any of ``std_features`` (N, d'),
``logits`` (N, C), ``local_logits`` (N, L·C: per local feature, the class scores, position-major; a
vision-language model's local cosines, for GL-MCM), ``labels`` (N,) int, ``head_weight`` (C, d) and
``head_bias`` (C,). Arrays are read
row block by row block by the detectors, so an ``np.memmap`` (e.g. from ``np.load(..., mmap_mode="r")``
of .npy files) works for feature sets larger than memory.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from rankopt.atomic import atomic_write
from rankopt.io import read_npz
from rankopt.probe import LinearHead, fit_probe

__all__ = ["Features", "LinearHead", "load_features", "save_features", "fit_linear_probe", "row_blocks"]

KEYS = ("features", "std_features", "logits", "local_logits", "labels", "head_weight", "head_bias")
BLOCK_ROWS = 65536  # rows of a feature set processed at once: bounded memory whatever N


@dataclass
class Features:
    features: np.ndarray  # (N, d): avg-pooled, raw (not normalised)
    std_features: np.ndarray | None = None  # (N, d'): per-channel std over the feature map
    logits: np.ndarray | None = None  # (N, C)
    labels: np.ndarray | None = None  # (N,) int64 ID class
    head: LinearHead | None = None
    local_logits: np.ndarray | None = None  # (N, L·C): class scores of every local feature, position-major

    def __post_init__(self) -> None:
        self.features = _matrix(self.features, "features")
        n = len(self.features)
        if n == 0:
            raise ValueError("features is empty (0 rows)")
        for name in ("std_features", "logits", "local_logits"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, _matrix(value, name))
                if len(getattr(self, name)) != n:
                    raise ValueError(f"{name} has {len(getattr(self, name))} rows but features has {n}")
        if self.labels is not None:
            labels = np.asarray(self.labels)
            if labels.ndim == 2:
                labels = labels[:, 0]  # hierarchical labels: the finest level is the class
            if labels.ndim != 1 or len(labels) != n:
                raise ValueError(f"labels must be (N,) with N={n} (the rows of features); got shape {labels.shape}")
            if not np.issubdtype(labels.dtype, np.integer):
                raise ValueError(f"labels must be integers; got {labels.dtype}")
            self.labels = labels.astype(np.int64)
        if self.local_logits is not None and (self.logits is None or self.local_logits.shape[1] % self.logits.shape[1]):
            raise ValueError(
                f"local_logits (N, {self.local_logits.shape[1]}) must hold L × C columns for the C classes of "
                "logits (N, C), which must be given with them"
            )
        if self.head is not None:
            w, b = self.head.weight, self.head.bias
            if w.ndim != 2 or w.shape[1] != self.dim or b.shape != (w.shape[0],):
                raise ValueError(
                    f"head_weight must be (C, {self.dim}) and head_bias (C,); got {tuple(w.shape)} and {tuple(b.shape)}"
                )

    def __len__(self) -> int:
        return len(self.features)

    @property
    def dim(self) -> int:
        return self.features.shape[1]

    def has(self, what: str) -> bool:
        """Whether this set carries ``what``: features, std_features, logits, labels or head."""
        return getattr(self, what) is not None or (what == "logits" and self.head is not None)


def _matrix(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = x if isinstance(x, np.memmap) else np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, d); got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name} must be floating point; got {x.dtype}")
    if x.shape[1] == 0:
        raise ValueError(f"{name} has 0 columns")
    for start in range(0, len(x), BLOCK_ROWS):
        part = np.asarray(x[start : start + BLOCK_ROWS])
        if not np.isfinite(part).all():
            bad = np.flatnonzero(~np.isfinite(part).all(axis=1))[0] + start
            raise ValueError(f"{name} has NaN or infinite values (first in row {bad})")
    return x


def block(x: np.ndarray, start: int, stop: int) -> torch.Tensor:
    """Rows [start, stop) as a float64 tensor (a copy: memmaps are read-only)."""
    return torch.from_numpy(np.array(x[start:stop], dtype=np.float64))


def row_blocks(n: int, rows: int | None = None):
    """(start, stop) of consecutive row blocks of at most ``rows`` (default BLOCK_ROWS) rows."""
    rows = rows or BLOCK_ROWS
    for start in range(0, n, rows):
        yield start, min(n, start + rows)


def load_features(path: str | Path, what: str = "features file") -> Features:
    """A feature set from an npz file (see the module docstring); errors name the file and the array."""
    p = Path(path)
    arrays = read_npz(
        p, what, ("features",), KEYS[1:], expected=f"'features' (N, d) and optionally {', '.join(KEYS[1:])}"
    )
    if ("head_weight" in arrays) != ("head_bias" in arrays):
        raise ValueError(f"{what} {p}: head_weight and head_bias go together")
    head = None
    if "head_weight" in arrays:
        head = LinearHead(
            torch.as_tensor(arrays["head_weight"], dtype=torch.float64),
            torch.as_tensor(arrays["head_bias"], dtype=torch.float64),
        )
    try:
        return Features(
            arrays["features"],
            arrays.get("std_features"),
            arrays.get("logits"),
            arrays.get("labels"),
            head,
            arrays.get("local_logits"),
        )
    except ValueError as err:
        raise ValueError(f"{what} {p}: {err}") from None


def save_features(feats: Features, path: str | Path) -> None:
    """Write a feature set as npz (atomically: a cache is never half-written)."""
    arrays = {
        f.name: getattr(feats, f.name) for f in fields(feats) if f.name != "head" and getattr(feats, f.name) is not None
    }
    if feats.head is not None:
        arrays["head_weight"] = feats.head.weight.numpy()
        arrays["head_bias"] = feats.head.bias.numpy()
    atomic_write(path, lambda f: np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()}))


def fit_linear_probe(
    feats: Features, epochs: int = 100, weight_decay: float = 1e-4, seed: int = 0, max_rows: int = 200_000
) -> LinearHead:
    """A linear classifier on the ID training features (:func:`rankopt.probe.fit_probe`), so that
    logit-based detectors exist for embedding models without a classification head."""
    if feats.labels is None:
        raise ValueError("a linear probe needs the class labels of the ID training features")
    return fit_probe(feats.features, feats.labels, epochs, weight_decay, seed, max_rows)
