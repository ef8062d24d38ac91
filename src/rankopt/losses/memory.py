"""CrossBatchMemory (Wang et al., CVPR 2020): rank each batch against a memory of past embeddings.

A ring buffer of detached embeddings and labels (tensors, not lists), filled with the batch *before*
the loss is computed, so the reference always holds the batch itself too (the fix of PML issue #24;
as in ROADMAP, each query then meets its own detached copy as a positive). Works with every loss of
the common signature, flat or hierarchical labels. Until ``start_step`` batches have been seen the
loss is computed in-batch. ``batch_weight`` adds w · loss(batch) to the memory loss (SupRank averages
the two: batch_weight=1 and halve the weight of the whole).

``unique=True`` is ROADMAP's memory: one slot per dataset item (``size`` = the number of training
items), each holding that item's latest embedding; the batch's dataset ``indices`` say which slots it
overwrites, and the reference is every slot filled so far. The memory keeps the embeddings' dtype.
"""

from __future__ import annotations

import torch

from rankopt.losses.base import Loss

__all__ = ["CrossBatchMemory"]


class CrossBatchMemory(Loss):
    def __init__(
        self, loss: Loss, size: int, start_step: int = 0, batch_weight: float = 0.0, unique: bool = False
    ) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"CrossBatchMemory: size must be >= 1; got {size}")
        self.loss, self.size, self.start_step, self.batch_weight = loss, size, start_step, batch_weight
        self.unique = unique
        self.register_buffer("occupied", torch.zeros(size if unique else 0, dtype=torch.bool))
        self.register_buffer("embeddings", torch.empty(0), persistent=True)
        self.register_buffer("labels", torch.empty(0, dtype=torch.int64), persistent=True)
        self.register_buffer("position", torch.zeros((), dtype=torch.int64))
        self.register_buffer("filled", torch.zeros((), dtype=torch.int64))
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))

    @property
    def hierarchical(self) -> bool:
        return self.loss.hierarchical

    def proxy_parameters(self):
        return self.loss.proxy_parameters()

    def reset(self) -> None:
        self.embeddings = torch.empty(0, device=self.position.device)
        self.labels = torch.empty(0, dtype=torch.int64, device=self.position.device)
        self.position.zero_(), self.filled.zero_(), self.steps.zero_(), self.occupied.zero_()

    @torch.no_grad()
    def enqueue(self, embeddings: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor | None = None) -> None:
        lab = labels if labels.ndim == 2 else labels.unsqueeze(1)
        b = embeddings.shape[0]
        if b > self.size:
            raise ValueError(f"CrossBatchMemory: memory size {self.size} is smaller than the batch ({b})")
        if self.embeddings.numel() == 0:
            self.embeddings = torch.zeros(
                self.size, embeddings.shape[1], dtype=embeddings.dtype, device=embeddings.device
            )
            self.labels = torch.zeros(self.size, lab.shape[1], dtype=torch.int64, device=embeddings.device)
        if embeddings.shape[1] != self.embeddings.shape[1] or lab.shape[1] != self.labels.shape[1]:
            raise ValueError(
                f"CrossBatchMemory: batch of dimension {embeddings.shape[1]} with {lab.shape[1]} label column(s) "
                f"does not match the memory ({self.embeddings.shape[1]}, {self.labels.shape[1]})"
            )
        if self.unique:
            if indices is None:
                raise ValueError(
                    "CrossBatchMemory(unique=True) needs the batch's dataset indices: loss(emb, labels, indices=...)"
                )
            idx = indices.to(device=self.occupied.device, dtype=torch.int64)
            if idx.shape != (b,) or int(idx.min()) < 0 or int(idx.max()) >= self.size:
                raise ValueError(
                    f"CrossBatchMemory(unique=True): indices must be {b} dataset indices in [0, {self.size})"
                )
            self.occupied[idx] = True
        else:
            idx = (self.position + torch.arange(b, device=self.position.device)) % self.size
            self.position.copy_((self.position + b) % self.size)
            self.filled.copy_(torch.clamp(self.filled + b, max=self.size))
        self.embeddings[idx] = embeddings.detach().to(self.embeddings.dtype)
        self.labels[idx] = lab.to(torch.int64)

    def compute_loss(self, embeddings, labels, ref_embeddings, ref_labels, *, indices=None) -> torch.Tensor:
        if ref_embeddings is not None or ref_labels is not None:
            raise ValueError("CrossBatchMemory supplies the reference set itself; do not pass ref_embeddings")
        if not isinstance(labels, torch.Tensor) or torch.is_floating_point(labels):
            raise ValueError("CrossBatchMemory: labels must be an integer tensor")
        self.enqueue(embeddings, labels, indices)
        self.steps += 1
        if int(self.steps) <= self.start_step:
            return self.loss(embeddings, labels)
        if self.unique:
            slots = self.occupied.nonzero().squeeze(1)
            ref, ref_lab = self.embeddings[slots], self.labels[slots]
        else:
            n = int(self.filled)
            ref, ref_lab = self.embeddings[:n], self.labels[:n]
        mem_lab = ref_lab if labels.ndim == 2 else ref_lab[:, 0]
        out = self.loss(embeddings, labels, ref, mem_lab)
        if self.batch_weight:
            out = out + self.batch_weight * self.loss(embeddings, labels)
        return out

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # buffers are created lazily at the first batch: take the saved shapes
        for name in ("embeddings", "labels"):
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
