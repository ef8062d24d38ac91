"""The self-distillation losses of DINOv2 / Franca, as functions on tensors.

* Teacher targets from prototype logits t (N, K) at temperature τ_t: **Sinkhorn–Knopp** (Caron et
  al., SwAV): Q = exp(t/τ_t)ᵀ (K, N), then ``iterations`` times: rows scaled to sum 1/K, columns to
  1/N; returned ×N so that every sample's target sums to 1 and every prototype receives N/K of the
  mass — or **centering** (DINO): softmax((t − c)/τ_t) with c an exponential moving average of the
  teacher's batch means.
* **DINO cross-entropy** between a teacher target q and a student's logits s at τ_s:
  −Σ_k q_k log softmax(s/τ_s)_k, averaged over samples.
* **iBOT** masked-patch loss: the same cross-entropy per masked patch, averaged over an image's masked
  patches, then over images (an image without a masked patch counts as 0, as in the authors' code).
* **KoLeo** (Sablayrolles et al.): −mean log ‖x_i − x_nn(i)‖ over L2-normalised rows, the nearest
  neighbour taken among the other rows: it spreads the embeddings.

Each is checked against its definition written as a loop, and against a port of the authors'
code (valeoai/Franca 24f8c60), in tests/ssl/.

>>> import torch
>>> logits = torch.tensor([[0.9, 0.1, 0.0, 0.0], [0.8, 0.0, 0.2, 0.0], [0.7, 0.0, 0.0, 0.3],
...                        [0.6, 0.4, 0.0, 0.0], [0.5, 0.0, 0.5, 0.0], [0.4, 0.0, 0.0, 0.6]])
>>> q = sinkhorn_knopp(logits, temperature=0.1, iterations=100)
>>> q.sum(1).round(decimals=4)     # every sample's target sums to 1 ...
tensor([1., 1., 1., 1., 1., 1.])
>>> q.sum(0).round(decimals=2)     # ... and every prototype gets N/K = 6/4 of the mass
tensor([1.5000, 1.5000, 1.5000, 1.5000])
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["sinkhorn_knopp", "Centering", "dino_cross_entropy", "ibot_patch_loss", "koleo"]


@torch.no_grad()
def sinkhorn_knopp(
    logits: torch.Tensor, temperature: float, iterations: int = 3, distributed: bool = False
) -> torch.Tensor:
    """Targets (N, K) from teacher logits (N, K) by ``iterations`` Sinkhorn–Knopp steps (see the module
    docstring), computed in the log domain: the same numbers as the authors' exp-and-divide, without
    their overflow and underflow at low temperatures. ``distributed``: the prototypes are balanced over
    the global batch of every torch.distributed process, as in the authors' code."""
    if temperature <= 0:
        raise ValueError(f"teacher temperature={temperature} must be positive")
    log_q = logits.float().t() / temperature  # (K, N)
    k, n = log_q.shape[0], log_q.shape[1]
    world = dist.get_world_size() if distributed else 1
    for _ in range(iterations):
        log_q = log_q - _row_logsumexp(log_q, distributed) - math.log(k)
        log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) - math.log(n * world)
    return torch.exp(log_q + math.log(n * world)).t()


def _row_logsumexp(log_q: torch.Tensor, distributed: bool) -> torch.Tensor:
    """log Σ over the samples of every process, per prototype (K, 1)."""
    local = torch.logsumexp(log_q, dim=1, keepdim=True)
    if not distributed:
        return local
    peak = local.clone()
    dist.all_reduce(peak, op=dist.ReduceOp.MAX)
    total = torch.exp(local - peak)
    dist.all_reduce(total)
    return peak + torch.log(total)


class Centering(nn.Module):
    """DINO's centering: targets softmax((t − c)/τ_t); ``update`` moves c towards the batch mean of the
    teacher logits: c ← m·c + (1 − m)·mean(t)."""

    def __init__(self, dim: int, momentum: float = 0.9) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("center", torch.zeros(1, dim))

    @torch.no_grad()
    def targets(self, logits: torch.Tensor, temperature: float) -> torch.Tensor:
        return torch.softmax((logits.float() - self.center) / temperature, dim=-1)

    @torch.no_grad()
    def update(self, logits: torch.Tensor, all_reduce=None, world_size: int = 1) -> None:
        mean = logits.float().sum(dim=0, keepdim=True)
        if all_reduce is not None:
            all_reduce(mean)
        mean = mean / (len(logits) * world_size)
        self.center.mul_(self.momentum).add_(mean * (1 - self.momentum))


def dino_cross_entropy(student_logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over rows of −Σ_k q_k log softmax(s/τ)_k; ``student_logits`` and ``targets`` (N, K)."""
    return -(targets * torch.log_softmax(student_logits.float() / temperature, dim=-1)).sum(dim=-1).mean()


def ibot_patch_loss(
    student_logits: torch.Tensor, targets: torch.Tensor, image_of_patch: torch.Tensor, n_images: int, temperature: float
) -> torch.Tensor:
    """iBOT on M masked patches: logits and targets (M, K), ``image_of_patch`` (M,) the image each
    belongs to; per image the mean over its masked patches, summed over images, divided by ``n_images``."""
    per_patch = -(targets * torch.log_softmax(student_logits.float() / temperature, dim=-1)).sum(dim=-1)  # (M,)
    counts = torch.bincount(image_of_patch, minlength=n_images).clamp_min(1).to(per_patch.dtype)
    return (per_patch / counts[image_of_patch]).sum() / n_images


def koleo(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """KoLeo regulariser of rows x (N, d): −mean_i log ‖x̂_i − x̂_nn(i)‖ on L2-normalised rows."""
    if len(x) < 2:
        raise ValueError(f"KoLeo needs at least 2 rows; got {len(x)}")
    z = nn.functional.normalize(x.float(), dim=-1, eps=eps)
    with torch.no_grad():
        dots = z @ z.t()
        dots.fill_diagonal_(-2.0)  # never one's own neighbour
        nn_index = dots.argmax(dim=1)
    distances = (z - z[nn_index] + eps).norm(dim=-1)  # PairwiseDistance adds eps inside, as the authors' does
    return -torch.log(distances + eps).mean()
