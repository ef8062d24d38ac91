"""What a report reads: a run folder (image retrieval or recommendation) or an embeddings .npz,
turned into one :class:`Source` — the metrics, the per-query values, the history, and for
retrieval the embeddings and images behind the rankings."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Source", "RetrievalView", "load_source"]


@dataclass
class RetrievalView:
    """The test queries (and gallery) of a retrieval evaluation, to draw rankings from."""

    queries: np.ndarray  # (Q, d)
    query_labels: np.ndarray  # (Q, L)
    gallery: np.ndarray | None = None  # None: leave-one-out
    gallery_labels: np.ndarray | None = None
    images: Any = None  # dataset of the queries (item i → (image tensor, ...)), for thumbnails
    gallery_images: Any = None


@dataclass
class Source:
    kind: str  # "retrieval" | "recommendation" | "embeddings"
    title: str
    path: Path
    metrics: dict[str, float]  # the test metrics (means) as recorded
    per_query: dict[str, np.ndarray]  # metric → value per query (NaN: no relevant item)
    query_ids: np.ndarray  # query index (retrieval) or user id (recommendation), in file order
    history: list[dict] = field(default_factory=list)
    selection: dict | None = None
    retrieval: RetrievalView | None = None
    user_activity: np.ndarray | None = None  # recommendation: training interactions of each query_ids user
    config: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the page could not show, and why


def load_source(path: str | Path, gallery: str | Path | None = None, *, with_rankings: bool = True) -> Source:
    """A run folder or an embeddings .npz. with_rankings=False skips what only the pictures need
    (re-embedding the test set, loading the recommendation data): a comparison reads per-query values."""
    p = Path(path)
    if p.is_dir():
        if gallery is not None:
            raise ValueError("--gallery goes with an embeddings .npz, not a run folder")
        from rankopt.train.run import load_run

        cfg = load_run(p)
        if not (p / "metrics.json").is_file():
            raise FileNotFoundError(f"{p} has no metrics.json: the run has not finished (resume it first)")
        return _recsys_run(p, cfg, with_rankings) if cfg.task == "recsys" else _image_run(p, cfg, with_rankings)
    if p.suffix == ".npz" or p.is_file():
        return _embeddings(p, gallery)
    raise FileNotFoundError(f"{p} is neither a run folder nor an .npz file")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from None


def read_per_query(path: Path, id_column: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A test_per_query.csv: the id column and each metric column (empty cells → NaN)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the run was tested before per-query values were saved; "
                                "evaluate it again")
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0][:1] != [id_column]:
        raise ValueError(f"{path}: expected a header starting with {id_column!r}")
    header, body = rows[0], rows[1:]
    try:
        ids = np.array([int(r[0]) for r in body], dtype=np.int64)
        cols = {name: np.array([float(r[j]) if r[j] != "" else np.nan for r in body]) for j, name in enumerate(header) if j}
    except (ValueError, IndexError) as err:
        raise ValueError(f"{path}: malformed row ({err})") from None
    return ids, cols


def _image_run(p: Path, cfg, with_rankings: bool) -> Source:
    out = _read_json(p / "metrics.json")
    ids, per_query = read_per_query(p / "test_per_query.csv", "query")
    view, notes = None, []
    if with_rankings:
        from rankopt.data.base import DatasetNotFoundError
        from rankopt.train.protocol import test_splits
        from rankopt.train.run import embed_dataset, load_split

        checkpoint = p / "checkpoints" / "best.ckpt"
        q_split, g_split = test_splits(cfg.data)
        try:
            q, ql = embed_dataset(checkpoint, split=q_split)
            g = gl = None
            if g_split is not None:
                g, gl = embed_dataset(checkpoint, split=g_split)
            view = RetrievalView(q, _two_d(ql), g, None if gl is None else _two_d(gl), load_split(cfg, q_split, train=False),
                                 None if g_split is None else load_split(cfg, g_split, train=False))
        except DatasetNotFoundError as err:  # the numbers are in the run folder; the pictures need the images
            notes.append(f"No curves or gallery: the test images are not here ({' '.join(str(err).split())})")
        if view is not None and len(view.queries) != len(ids):
            raise ValueError(f"{p}: {len(ids)} per-query rows but the test split has {len(view.queries)} queries now")
    return Source("retrieval", f"{cfg.data.name} · {cfg.loss.name} · {cfg.model.backbone}", p, _means(out["test"]),
                  per_query, ids, out.get("history", []), out.get("selection"), view, config=_config_dict(p), notes=notes)


def _recsys_run(p: Path, cfg, with_rankings: bool) -> Source:
    out = _read_json(p / "metrics.json")
    ids, per_user = read_per_query(p / "test_per_query.csv", "user")
    activity, notes = None, []
    if with_rankings:
        from rankopt.recsys.run import load_data

        try:
            data = load_data(cfg)
        except (FileNotFoundError, ValueError) as err:  # the per-user numbers are in the run folder
            notes.append(f"No NDCG by user activity: the training interactions could not be read ({' '.join(str(err).split())})")
        else:
            activity = np.bincount(data.train.user, minlength=data.n_users)[ids]
    return Source("recommendation", f"{Path(str(cfg.data.root)).name} · {cfg.model.name} · {cfg.loss.name}", p,
                  _means(out["test"]), per_user, ids, out.get("history", []), out.get("selection"),
                  user_activity=activity, config=_config_dict(p), notes=notes)


def _embeddings(p: Path, gallery: str | Path | None) -> Source:
    from rankopt.cli import load_npz
    from rankopt.metrics import aggregate, evaluate_per_query

    q, ql = load_npz(p)
    g = gl = None
    if gallery is not None:
        g, gl = load_npz(gallery, "gallery file")
    result = evaluate_per_query(q, ql, g, gl)
    metrics = {k: v for k, v in aggregate(result).items() if not k.startswith("n_")}
    view = RetrievalView(np.asarray(q, dtype=np.float32), _two_d(ql), None if g is None else np.asarray(g, dtype=np.float32),
                         None if gl is None else _two_d(gl))
    return Source("embeddings", p.name, p, metrics, result.values, np.arange(result.n_queries), retrieval=view)


def _means(test: dict) -> dict[str, float]:
    return {k: float(v) for k, v in test.items() if not k.startswith("n_") and isinstance(v, (int, float))}


def _two_d(labels) -> np.ndarray:
    labels = np.asarray(labels)
    return labels[:, None] if labels.ndim == 1 else labels


def _config_dict(p: Path) -> dict:
    import yaml

    try:
        return yaml.safe_load((p / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}
