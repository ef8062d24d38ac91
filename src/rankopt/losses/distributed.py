"""Rank over the global batch in distributed training: all-gather embeddings with gradients.

``all_gather_with_grad`` concatenates every process's tensor in rank order (the same order on every
process, unlike PML's local-first gather that corrupts memory queues, PML #639). Every process then
computes the same global loss; its backward sums, across processes, the gradient each one computed
for a slice, and hands each process its own slice. With DDP's gradient averaging the parameter
gradients then equal those of one process holding the whole batch. Any backend (gloo, nccl).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from rankopt.losses.base import Loss

__all__ = ["all_gather_with_grad", "distributed_loss", "DistributedLoss"]


class _AllGather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor):
        world = dist.get_world_size()
        sizes = [torch.zeros(1, dtype=torch.int64, device=tensor.device) for _ in range(world)]
        dist.all_gather(sizes, torch.tensor([tensor.shape[0]], device=tensor.device))
        sizes = [int(s) for s in sizes]
        if len(set(sizes)) != 1:
            raise ValueError(f"all_gather_with_grad needs the same batch size on every process; got {sizes}")
        parts = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(parts, tensor.contiguous())
        ctx.rank, ctx.size = dist.get_rank(), tensor.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        # every process computed the same loss: the sum is world × the gradient; DDP divides by world
        return grad[ctx.rank * ctx.size : (ctx.rank + 1) * ctx.size]


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenation of ``tensor`` from every process, differentiable; the tensor itself if not distributed."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    if tensor.requires_grad:
        return _AllGather.apply(tensor)
    with torch.no_grad():
        return _AllGather.forward(_Ctx(), tensor)


class _Ctx:
    pass


def distributed_loss(
    loss: nn.Module, embeddings, labels, ref_embeddings=None, ref_labels=None, **tensors
) -> torch.Tensor:
    """``loss`` on the global batch: embeddings (with gradients) and labels gathered from every process
    first, a reference set too if given, and any per-item keyword tensor (e.g. dataset ``indices``)."""
    emb, lab = all_gather_with_grad(embeddings), all_gather_with_grad(labels)
    if ref_embeddings is not None:
        ref_embeddings, ref_labels = all_gather_with_grad(ref_embeddings), all_gather_with_grad(ref_labels)
    extra = {k: all_gather_with_grad(v) for k, v in tensors.items() if v is not None}
    return loss(emb, lab, ref_embeddings, ref_labels, **extra)


class DistributedLoss(Loss):
    """Wraps any loss so that it ranks the global batch: embeddings (with gradients) and labels are
    gathered from every process before the loss; a reference set, if given, is gathered too."""

    def __init__(self, loss: Loss) -> None:
        super().__init__()
        self.loss = loss

    @property
    def hierarchical(self) -> bool:
        return self.loss.hierarchical

    def proxy_parameters(self):
        return self.loss.proxy_parameters()

    def compute_loss(self, embeddings, labels, ref_embeddings, ref_labels) -> torch.Tensor:
        return distributed_loss(self.loss, embeddings, labels, ref_embeddings, ref_labels)
