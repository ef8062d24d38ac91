"""``RetrievalMetrics``: rankopt's exact metrics as a torchmetrics ``Metric``, for validation loops
users already have (their LightningModule, their DDP script).

Embeddings and labels are accumulated batch by batch (detached) and ranked once, at ``compute()``,
leave-one-out (each item a query against all the others) — or against a gallery given to the
constructor. Under DDP torchmetrics gathers every process's batches; Lightning's
``DistributedSampler`` pads the last shard by repeating items, so pass each item's dataset index to
``update(..., indexes=...)``: repeated indices are dropped, and every item counts once. Without
indexes on more than one process a warning says the padding may count some items twice.

Needs torchmetrics (installed with Lightning: ``pip install rankopt[train]``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from rankopt.metrics.evaluate import NO_POSITIVE, evaluate
from rankopt.metrics.names import parse_metrics
from rankopt.metrics.ranking import TIES
from rankopt.search import SIMILARITIES
from rankopt.validation import check_choice

__all__ = ["RetrievalMetrics"]


class RetrievalMetrics(Metric):
    """Exact ranking metrics over everything seen since the last ``reset()``.

    ``compute()`` returns ``{prefix + name: 0-d tensor}`` for each requested metric (log it with
    ``self.log_dict(metric.compute())``) and, when queries were left out for lack of a positive,
    ``prefix + "n_excluded"``. Arguments as :func:`rankopt.metrics.evaluate`; ``gallery`` /
    ``gallery_labels``: a fixed gallery the accumulated queries are ranked against.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        metrics: str | Sequence[str] = ("map@r", "hit@1"),
        *,
        prefix: str = "",
        similarity: str = "cosine",
        ties: str = "expected",
        no_positive: str = "exclude",
        gallery: Any | None = None,
        gallery_labels: Any | None = None,
        memory_budget: int = 1 << 30,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.metric_names = [s.name for s in parse_metrics(metrics)]
        check_choice(similarity, SIMILARITIES, "similarity")
        check_choice(ties, TIES, "ties")
        check_choice(no_positive, NO_POSITIVE, "no_positive")
        if (gallery is None) != (gallery_labels is None):
            raise ValueError("give gallery and gallery_labels together, or neither")
        self.prefix, self.similarity, self.ties, self.no_positive = prefix, similarity, ties, no_positive
        self.gallery, self.gallery_labels, self.memory_budget = gallery, gallery_labels, memory_budget
        self.add_state("embeddings", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")
        self.add_state("indexes", default=[], dist_reduce_fx="cat")

    def update(self, embeddings: torch.Tensor, labels: torch.Tensor, indexes: torch.Tensor | None = None) -> None:
        """Add a batch: embeddings (B, d), labels (B,) or (B, L) int, indexes (B,) dataset indices."""
        if not isinstance(embeddings, torch.Tensor) or embeddings.ndim != 2 or not torch.is_floating_point(embeddings):
            raise ValueError(
                f"RetrievalMetrics.update: embeddings must be a float (B, d) tensor; got "
                f"{getattr(embeddings, 'shape', type(embeddings).__name__)}"
            )
        labels = torch.as_tensor(labels, device=embeddings.device)
        if labels.shape[:1] != embeddings.shape[:1] or labels.ndim not in (1, 2):
            raise ValueError(
                f"RetrievalMetrics.update: labels must be (B,) or (B, L) for {embeddings.shape[0]} "
                f"embeddings; got shape {tuple(labels.shape)}"
            )
        if (indexes is None) != (len(self.indexes) == 0) and len(self.embeddings):
            raise ValueError("RetrievalMetrics.update: give indexes with every batch or with none")
        self.embeddings.append(embeddings.detach())
        self.labels.append(labels.detach().to(torch.int64).reshape(embeddings.shape[0], -1))
        if indexes is not None:
            indexes = torch.as_tensor(indexes, device=embeddings.device).to(torch.int64)
            if indexes.shape != (embeddings.shape[0],):
                raise ValueError(
                    f"RetrievalMetrics.update: indexes must be ({embeddings.shape[0]},); got {tuple(indexes.shape)}"
                )
            self.indexes.append(indexes)

    def compute(self) -> dict[str, torch.Tensor]:
        emb, labels, index = _cat(self.embeddings), _cat(self.labels), _cat(self.indexes)
        if emb is None or len(emb) == 0:
            raise ValueError("RetrievalMetrics.compute: no embeddings were given to update() since the last reset()")
        if index is not None and index.numel() == 0:
            index = None  # a DDP sync turns an empty list state into an empty tensor
        if index is not None:
            if len(index) != len(emb):
                raise ValueError(
                    f"RetrievalMetrics.compute: {len(index)} indexes for {len(emb)} embeddings; some process "
                    "gave indexes and another did not"
                )
            index = index.to(torch.int64)
            order = torch.sort(index, stable=True).indices  # the first copy of each index is kept
            index, emb, labels = index[order], emb[order], labels[order]
            first = torch.ones_like(index, dtype=torch.bool)
            first[1:] = index[1:] != index[:-1]
            emb, labels = emb[first], labels[first]
        elif (
            torch.distributed.is_available()
            and torch.distributed.is_initialized()
            and torch.distributed.get_world_size() > 1
        ):
            warnings.warn(
                "RetrievalMetrics without indexes on several processes: a DistributedSampler pads the last shard with "
                "repeated items, which are then counted twice. Pass update(..., indexes=dataset_indices)",
                UserWarning,
                stacklevel=2,
            )
        out = evaluate(
            emb.float() if emb.dtype in (torch.float16, torch.bfloat16) else emb,
            labels,
            self.gallery,
            self.gallery_labels,
            metrics=self.metric_names,
            ties=self.ties,
            no_positive=self.no_positive,
            similarity=self.similarity,
            memory_budget=self.memory_budget,
        )
        result = {f"{self.prefix}{n}": torch.tensor(out[n], dtype=torch.float32) for n in self.metric_names}
        if out["n_excluded"]:
            result[f"{self.prefix}n_excluded"] = torch.tensor(float(out["n_excluded"]))
        return result


def _cat(state) -> torch.Tensor | None:
    """A list state (or, after a DDP sync, a tensor) as one tensor; None when nothing was added."""
    if isinstance(state, torch.Tensor):
        return state
    return dim_zero_cat(state) if len(state) else None
