"""Exact similarity search, streamed in query chunks, on CPU or CUDA, with faiss as an option.

No Q × G matrix is ever held: scores are produced for a block of queries at a time, the block
sized from a memory budget. When the gallery is the query set, each query is removed from its own
ranking *by index* (its score set to -inf, so it sorts after every real item), never by position,
so duplicate embeddings cannot remove the wrong item.

Scores: ``cosine`` (dot product of L2-normalised vectors), ``dot``, or ``euclidean`` (the negative
squared distance, computed as 2·q·g − |g|², which orders each query's gallery exactly as −|q − g|²
up to rounding).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from rankopt.validation import check_choice, check_device, check_embeddings, check_labels, check_same_length

__all__ = ["SIMILARITIES", "Search", "prepare_search", "rows_per_chunk", "knn"]

SIMILARITIES = ("cosine", "dot", "euclidean")
BACKENDS = ("torch", "faiss")


@dataclass
class Search:
    """Queries and gallery ready to be scored block by block."""

    queries: torch.Tensor  # (Q, d)
    gallery: torch.Tensor  # (G, d)
    similarity: str
    self_index: torch.Tensor | None  # (Q,) gallery index of each query, or None
    gallery_sqnorm: torch.Tensor | None = None  # (G,) for euclidean
    backend: str = "torch"
    separate_gallery: bool = True  # False: the queries are the gallery (gallery=None)
    _faiss_index: Any = field(default=None, repr=False)

    @property
    def n_queries(self) -> int:
        return self.queries.shape[0]

    @property
    def n_gallery(self) -> int:
        return self.gallery.shape[0]

    @property
    def n_ranked(self) -> int:
        """Items each query ranks: the gallery, less the query itself when it belongs to it."""
        return self.n_gallery - (1 if self.self_index is not None else 0)

    def scores(self, start: int, stop: int) -> torch.Tensor:
        """Scores of queries[start:stop] against the whole gallery: (stop-start, G), self at -inf."""
        q = self.queries[start:stop]
        s = q @ self.gallery.T  # (Qc, G)
        if self.similarity == "euclidean":
            s = 2 * s - self.gallery_sqnorm.unsqueeze(0)
        if self.self_index is not None:
            rows = torch.arange(stop - start, device=s.device)
            s[rows, self.self_index[start:stop]] = float("-inf")
        return s

    def topk(self, start: int, stop: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The k best items of queries[start:stop], sorted by decreasing score (self excluded)."""
        if self.backend == "faiss":
            return self._faiss_topk(start, stop, k)
        return torch.topk(self.scores(start, stop), k, dim=1, largest=True, sorted=True)

    def _faiss_topk(self, start: int, stop: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        import numpy as np

        index = self._get_faiss_index()
        extra = 1 if self.self_index is not None else 0
        q = self.queries[start:stop].detach().cpu().to(torch.float32).numpy()
        dist, idx = index.search(np.ascontiguousarray(q), k + extra)
        values = torch.from_numpy(dist).to(torch.float64)
        indices = torch.from_numpy(idx).to(torch.int64)
        if self.similarity == "euclidean":
            # IndexFlatL2 returns |q - g|^2; turn it into our score 2 q.g - |g|^2 = |q|^2 - |q - g|^2
            values = torch.from_numpy(q).to(torch.float64).pow(2).sum(1, keepdim=True) - values
        if extra:
            own = indices == self.self_index[start:stop].cpu().unsqueeze(1)
            values = values.masked_fill(own, float("-inf"))
            values, order = torch.sort(values, dim=1, descending=True, stable=True)
            indices = indices.gather(1, order)
            values, indices = values[:, :k], indices[:, :k]
        device = self.queries.device
        return values.to(device=device, dtype=self.queries.dtype), indices.to(device)

    def _get_faiss_index(self):
        if self._faiss_index is None:
            try:
                import faiss
            except ImportError:
                raise ImportError(
                    "backend='faiss' needs the faiss package: pip install 'rankopt[faiss]' (or faiss-gpu)"
                ) from None
            g = self.gallery.detach().cpu().to(torch.float32).numpy()
            index = faiss.IndexFlatL2(g.shape[1]) if self.similarity == "euclidean" else faiss.IndexFlatIP(g.shape[1])
            index.add(g)
            self._faiss_index = index
        return self._faiss_index


def prepare_search(
    queries: Any,
    gallery: Any | None = None,
    *,
    similarity: str = "cosine",
    device: str | torch.device | None = None,
    backend: str = "torch",
    query_index: Any | None = None,
) -> Search:
    """Validate, move and normalise embeddings once. gallery=None: the queries are the gallery.

    query_index: with a separate gallery, the gallery index of each query when the queries are items
    of the gallery (a shard of it, in sharded evaluation); each is then removed from its own ranking
    by index, as with gallery=None. "leading": the queries are the gallery's first rows (checked).
    """
    check_choice(similarity, SIMILARITIES, "similarity")
    check_choice(backend, BACKENDS, "backend")
    q = check_embeddings(queries, "queries" if gallery is not None else "embeddings")
    g = q if gallery is None else check_embeddings(gallery, "gallery")
    if g.shape[1] != q.shape[1]:
        raise ValueError(f"gallery has dimension {g.shape[1]} but queries have {q.shape[1]}")
    dev = check_device(device) if device is not None else q.device
    dtype = torch.float64 if q.dtype == torch.float64 and g.dtype == torch.float64 else torch.float32
    q = q.to(device=dev, dtype=dtype)
    g = q if gallery is None else g.to(device=dev, dtype=dtype)
    if similarity == "cosine":
        q = _normalise(q, "queries" if gallery is not None else "embeddings")
        g = q if gallery is None else _normalise(g, "gallery")
    self_index = torch.arange(q.shape[0], device=dev) if gallery is None else None
    if isinstance(query_index, str) and query_index == "leading":  # the first Q gallery rows are the queries
        if g.shape[0] < q.shape[0] or not torch.equal(g[: q.shape[0]], q):
            raise ValueError(
                "ref_includes_query=True but the first rows of the gallery are not the queries: put the "
                f"{q.shape[0]} queries first in the gallery, in the same order (or pass gallery=None)"
            )
        query_index = torch.arange(q.shape[0], device=dev)
    if query_index is not None:
        if gallery is None:
            raise ValueError("query_index goes with a separate gallery; without one each query is removed already")
        self_index = torch.as_tensor(query_index, dtype=torch.int64, device=dev)
        if self_index.shape != (q.shape[0],):
            raise ValueError(
                f"query_index has shape {tuple(self_index.shape)}; expected ({q.shape[0]},), one gallery index per "
                "query"
            )
        if len(self_index) and (int(self_index.min()) < 0 or int(self_index.max()) >= g.shape[0]):
            raise ValueError(f"query_index must lie in [0, {g.shape[0]}), the gallery's rows")
    sqnorm = (g * g).sum(dim=1) if similarity == "euclidean" else None
    if similarity != "cosine":
        _check_score_range(q, g, sqnorm)
    return Search(q, g, similarity, self_index, sqnorm, backend, separate_gallery=gallery is not None)


def _check_score_range(q: torch.Tensor, g: torch.Tensor, sqnorm: torch.Tensor | None) -> None:
    """Every score must be finite: |q·g| <= |q|·|g| (and |g|² for euclidean) must stay below the
    dtype's largest value, else overflow turns ranks into NaN comparisons silently."""
    big = torch.finfo(q.dtype).max
    qn = q.norm(dim=1).max() if len(q) else q.new_zeros(())
    gn = g.norm(dim=1).max() if len(g) else g.new_zeros(())
    bound = float(qn) * float(gn) * (2 if sqnorm is not None else 1) + (
        float(sqnorm.max()) if sqnorm is not None and len(g) else 0.0
    )
    if not (bound < big) or not bool(torch.isfinite(qn)) or not bool(torch.isfinite(gn)):
        raise ValueError(
            f"similarities would overflow {q.dtype}: embedding norms reach {float(qn):.3g} (queries) and "
            f"{float(gn):.3g} (gallery); rescale the embeddings, use float64, or similarity='cosine'"
        )


def _normalise(x: torch.Tensor, name: str) -> torch.Tensor:
    norms = x.norm(dim=1, keepdim=True)
    if not bool(torch.isfinite(norms).all()):  # |x|² overflowed: scale rows by their largest entry first
        x = x / x.abs().amax(dim=1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
        norms = x.norm(dim=1, keepdim=True)
    if bool((norms == 0).any()):
        row = int((norms.squeeze(1) == 0).nonzero()[0])
        raise ValueError(
            f"{name} row {row} is all zeros: cosine similarity is undefined for it "
            "(use similarity='dot' or 'euclidean', or drop the row)"
        )
    return x / norms


def rows_per_chunk(memory_budget: int, n_columns: int, bytes_per_cell: int, minimum: int = 1) -> int:
    """How many query rows of n_columns cells fit the memory budget."""
    if not memory_budget > 0:
        raise ValueError(f"memory_budget={memory_budget} must be a positive number of bytes")
    return max(minimum, int(memory_budget // max(1, n_columns * bytes_per_cell)))


def knn(
    queries: Any,
    k: int,
    gallery: Any | None = None,
    *,
    similarity: str = "cosine",
    device: str | torch.device | None = None,
    backend: str = "torch",
    memory_budget: int = 1 << 30,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact k nearest neighbours: (scores, indices), each (Q, k), sorted by decreasing score.

    gallery=None searches the queries against themselves with each query removed by index.
    """
    search = prepare_search(queries, gallery, similarity=similarity, device=device, backend=backend)
    if not 1 <= k <= search.n_ranked:
        raise ValueError(f"k={k} must be between 1 and the {search.n_ranked} items each query ranks")
    step = rows_per_chunk(memory_budget, search.n_gallery, 4 * search.queries.element_size())
    values, indices = [], []
    for start in range(0, search.n_queries, step):
        v, i = search.topk(start, min(start + step, search.n_queries), k)
        values.append(v)
        indices.append(i)
    return torch.cat(values), torch.cat(indices)


def check_query_gallery_labels(
    search: Search, query_labels: Any, gallery_labels: Any | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels for a prepared search: int64 (Q, L) and (G, L) on the search device."""
    if not search.separate_gallery:
        if gallery_labels is not None:
            raise ValueError("gallery_labels was given without gallery embeddings")
        ql = check_labels(query_labels, "labels")
        check_same_length(search.queries, ql, "embeddings", "labels")
        ql = ql.to(search.queries.device)
        return ql, ql
    if gallery_labels is None:
        raise ValueError("gallery embeddings were given without gallery_labels")
    ql = check_labels(query_labels, "query_labels")
    gl = check_labels(gallery_labels, "gallery_labels")
    check_same_length(search.queries, ql, "queries", "query_labels")
    check_same_length(search.gallery, gl, "gallery", "gallery_labels")
    if ql.shape[1] != gl.shape[1]:
        raise ValueError(
            f"query_labels has {ql.shape[1]} label columns but gallery_labels has {gl.shape[1]}; "
            "both must describe the same hierarchy"
        )
    return ql.to(search.queries.device), gl.to(search.queries.device)
